"""The dispatcher walks the plan: order, body as each provider sends it, parts and costs."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from decimal import Decimal
from typing import ClassVar

import pytest

import smsrelay.store
from smsrelay.dispatch import Dispatcher, Done
from smsrelay.economics.prices import Price, PriceTable
from smsrelay.errors import TransientProviderError
from smsrelay.metrics import Metrics
from smsrelay.models import BodyEncoding, SendRequest, SendResult, State
from smsrelay.providers import Provider, ProviderSettings
from smsrelay.routing import RouteConfig, Router
from smsrelay.settings import RetrySettings
from smsrelay.store import SqlStore, Store
from smsrelay.store.batch import BatchingStore
from tests.test_dispatch import EventList

LONDON = "+442071838750"
RETRY = RetrySettings(max_attempts=1, delays=[1.0], jitter=0.0)
WHEN = datetime(2026, 1, 1, tzinfo=UTC)


class Billing(Provider):
    """Takes every message and reports a price, like Twilio's ``price``; keeps what it got."""

    type_name: ClassVar[str] = "billing"
    settings_class: ClassVar[type[ProviderSettings]] = ProviderSettings

    def __init__(self, name: str, encoding: BodyEncoding = BodyEncoding.EXACT) -> None:
        super().__init__(name, ProviderSettings(type=self.type_name, encoding=encoding))
        self.bodies: list[str] = []

    async def send(self, request: SendRequest) -> SendResult:
        self.bodies.append(request.body)
        return SendResult(
            provider_message_id=f"{self.name}-{len(self.bodies)}",
            cost=Decimal("0.0415"),
            currency="EUR",
        )


class Down(Provider):
    """Always fails transiently."""

    type_name: ClassVar[str] = "down"
    settings_class: ClassVar[type[ProviderSettings]] = ProviderSettings

    def __init__(self, name: str) -> None:
        super().__init__(name, ProviderSettings(type=self.type_name))

    async def send(self, request: SendRequest) -> SendResult:
        raise TransientProviderError(self.name, "503", "unavailable")


@pytest.fixture(params=["direct", "batching"])
async def store(request: pytest.FixtureRequest, database_url: str) -> AsyncIterator[Store]:
    """A migrated store (plain and group-commit), on SQLite and PostgreSQL."""
    sql = SqlStore.from_url(database_url)
    await smsrelay.store.upgrade(sql.engine)
    store: Store = sql if request.param == "direct" else BatchingStore(sql)
    try:
        yield store
    finally:
        await store.close()


def table(**per_part: str) -> PriceTable:
    """GB prices in USD."""
    return PriceTable([Price(p, "GB", Decimal(v), "USD", WHEN) for p, v in per_part.items()])


async def test_cheapest_plan_is_walked_and_costs_recorded(store: Store) -> None:
    """The cheapest provider is tried first; the failed and the sent attempt keep their bills."""
    down, smart, exact = Down("down"), Billing("smart", BodyEncoding.SMART), Billing("exact")
    providers: dict[str, Provider] = {p.name: p for p in (down, smart, exact)}
    route = RouteConfig(strategy="cheapest", providers=["exact", "smart", "down"])
    router = Router(
        {"*": route},
        prices=table(down="0.005", smart="0.02", exact="0.015"),
        encodings={"smart": BodyEncoding.SMART},
    )
    metrics = Metrics()
    dispatcher = Dispatcher(store, providers, router, EventList(), RETRY, metrics)
    body = "Don\u2019t " + "x" * 100  # UCS-2: 2 parts; smart GSM-7: 1 part
    raw = json.dumps({"id": "m-1", "to": LONDON, "body": body}).encode()

    assert await dispatcher.handle(raw) == Done(State.SENT)

    assert smart.bodies == ["Don't " + "x" * 100] and exact.bodies == []
    record = await store.get("m-1")
    assert record is not None and record.provider == "smart"
    assert (record.original_encoding, record.original_parts) == ("ucs2", 2)
    failed, sent = record.attempts
    assert (failed.provider, failed.outcome, failed.estimated_cost) == (
        "down",
        "transient",
        Decimal("0.010"),
    )
    assert (sent.sent_encoding, sent.sent_parts) == ("gsm7", 1)
    assert (sent.estimated_cost, sent.currency) == (Decimal("0.02"), "USD")
    assert (sent.actual_cost, sent.actual_currency) == (Decimal("0.0415"), "EUR")
    parts = metrics.registry.get_sample_value(
        "smsrelay_parts_total", {"provider": "smart", "country": "GB"}
    )
    cost = metrics.registry.get_sample_value(
        "smsrelay_estimated_cost_total", {"provider": "smart", "country": "GB", "currency": "USD"}
    )
    assert (parts, cost) == (1, 0.02)


async def test_plain_list_route_sends_the_body_unchanged(store: Store) -> None:
    """An existing list route sends in order, body as written, no cost without prices."""
    first = Billing("first")
    dispatcher = Dispatcher(store, {"first": first}, Router({"*": ["first"]}), EventList(), RETRY)
    body = "Don\u2019t"
    raw = json.dumps({"id": "m-2", "to": LONDON, "body": body}).encode()
    assert await dispatcher.handle(raw) == Done(State.SENT)
    assert first.bodies == [body]
    record = await store.get("m-2")
    assert record is not None
    (sent,) = record.attempts
    assert (sent.sent_encoding, sent.sent_parts, sent.estimated_cost) == ("ucs2", 1, None)


async def test_failed_message_keeps_its_original_encoding(store: Store) -> None:
    """A message no provider took still records its encoding and parts as written."""
    dispatcher = Dispatcher(store, {"down": Down("down")}, Router({"*": ["down"]}), EventList(),
                            RETRY)  # fmt: skip
    raw = json.dumps({"id": "m-3", "to": LONDON, "body": "x" * 161}).encode()
    assert await dispatcher.handle(raw) == Done(State.FAILED)
    record = await store.get("m-3")
    assert record is not None
    assert (record.original_encoding, record.original_parts) == ("gsm7", 2)
    assert (record.attempts[0].sent_encoding, record.attempts[0].sent_parts) == ("gsm7", 2)


async def test_nothing_left_to_try_fails_with_the_reasons(store: Store) -> None:
    """When every candidate is left out the message fails as no-provider, naming why."""
    route = RouteConfig(strategy="cheapest", providers=["first"])
    sink = EventList()
    dispatcher = Dispatcher(store, {"first": Billing("first")}, Router({"*": route}), sink, RETRY)
    raw = json.dumps({"id": "m-4", "to": LONDON, "body": "hi"}).encode()
    assert await dispatcher.handle(raw) == Done(State.FAILED)
    error = sink.events[-1].error
    assert error is not None and error.code == "no-provider"
    assert "first: no price for this destination" in error.message
