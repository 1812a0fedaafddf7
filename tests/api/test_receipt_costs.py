"""A receipt's stated cost becomes the sent attempt's actual cost, once, on both store paths."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from smsrelay.models import EventError, Receipt, ReceiptStatus, State, validate_request
from smsrelay.settings import Settings
from smsrelay.store import SqlStore, upgrade
from smsrelay.store.schema import attempts
from tests.api.support import MemoryPublisher, api_settings, auth, running_api
from tests.fakes.plivo import AUTH_ID, AUTH_TOKEN, callback, signed_callback
from tests.routing.test_explain import config, smsrelay

UUID = "db3ce55a-7f1d-11e1-8ea7-1231380bc196"
PATH = "/v1/receipts/plivo?smsrelay_id=m-1"


@pytest.fixture
async def any_store(database_url: str) -> AsyncIterator[SqlStore]:
    """A migrated store on SQLite or PostgreSQL."""
    store = SqlStore.from_url(database_url)
    await upgrade(store.engine)
    try:
        yield store
    finally:
        await store.close()


async def sent(
    store: SqlStore, attempt: int = 1, message_id: str = "m-1", pmid: str = UUID
) -> None:
    """``message_id`` sent through Plivo as ``pmid`` by attempt ``attempt`` (earlier ones failed)."""
    await store.claim(validate_request({"id": message_id, "to": "+14155550123", "body": "hi"}))
    for number in range(1, attempt):
        key = await store.start_attempt(message_id, number, "plivo")
        error = EventError(code="http-500", message="Plivo failed", retryable=True)
        await store.finish_attempt(key, "transient", error=error)
    key = await store.start_attempt(message_id, attempt, "plivo")
    await store.finish_message(
        message_id,
        State.SENT,
        provider="plivo",
        provider_message_id=pmid,
        segments=2,
        closing_attempt=key,
    )


async def billed(store: SqlStore, message_id: str = "m-1") -> list[tuple[int, str, Any, Any]]:
    """(number, outcome, actual_cost, actual_currency) of each attempt, in order."""
    async with store.engine.connect() as conn:
        rows = await conn.execute(
            select(
                attempts.c.number,
                attempts.c.outcome,
                attempts.c.actual_cost,
                attempts.c.actual_currency,
            )
            .where(attempts.c.message_id == message_id)
            .order_by(attempts.c.number)
        )
        return [tuple(r) for r in rows]


def plivo_settings(database_url: str) -> Settings:
    """The API's test settings with a Plivo instance whose callbacks verify."""
    plivo = {"type": "plivo", "auth_id": AUTH_ID, "auth_token": AUTH_TOKEN, "sender": "+1415"}
    return api_settings(
        database_url, providers={"simulator": {"type": "simulator"}, "plivo": plivo}
    )


async def post(client: Any, nonce: str, **params: str) -> int:
    """POST a signed Plivo callback for ``UUID`` (part 1 of 2); its status code."""
    fields = callback(UUID, **{"PartInfo": "1 of 2", "Units": "2", **params})
    webhook = signed_callback(fields, nonce, url=f"https://sms.example.com{PATH}")
    answer = await client.post(PATH, content=webhook.body, headers=webhook.headers)
    return int(answer.status_code)


async def test_plivo_receipt_cost_is_the_attempts_actual_cost_and_reported(
    any_store: SqlStore, database_url: str, tmp_path: Path
) -> None:
    """A priced Plivo callback fills the sent attempt's actual cost (not the failed one's);
    the costs report shows it; the same report again, or a later one, changes nothing."""
    await sent(any_store, attempt=2)
    settings = plivo_settings(database_url)
    async with running_api(settings, any_store, MemoryPublisher()) as api:
        assert await post(api.client, "n1", Status="sent", TotalAmount="0.0100") == 204
        assert await billed(any_store) == [
            (1, "transient", None, None),
            (2, "sent", "0.0100", "USD"),
        ]
        # The same report under another nonce: kept once, so its amount is not counted.
        assert await post(api.client, "n2", Status="sent", TotalAmount="0.0200") == 204
        # A later report restating the charge: the first cost stays (never added up).
        assert await post(api.client, "n3", Status="delivered", TotalAmount="0.0300") == 204
        assert await billed(any_store) == [
            (1, "transient", None, None),
            (2, "sent", "0.0100", "USD"),
        ]
        answer = await api.client.get(
            "/v1/reports/costs", params={"since": "7d", "by": "provider"}, headers=auth()
        )
        assert answer.status_code == 200, answer.text
        [line] = answer.json()
        assert (line["provider"], line["currency"], line["actual_cost"]) == ("plivo", "USD", 0.01)
        assert line["delivered"] == 0  # part 1 of 2 only
    # smsrelay report costs reads the same attempts.
    path = config(tmp_path, database_url)
    result = smsrelay("report", "costs", "--by", "provider", "--format", "json", "-c", str(path))
    assert result.returncode == 0, result.stderr
    [printed] = json.loads(result.stdout)
    assert (printed["provider"], printed["actual_cost"]) == ("plivo", 0.01)


async def test_malformed_amount_is_no_cost_and_no_error(
    any_store: SqlStore, database_url: str
) -> None:
    """A callback with a garbage TotalAmount is applied (204) and leaves the cost empty."""
    await sent(any_store)
    async with running_api(plivo_settings(database_url), any_store, MemoryPublisher()) as api:
        assert await post(api.client, "n1", Status="sent", TotalAmount="1e999") == 204
    assert await billed(any_store) == [(1, "sent", None, None)]


async def test_one_by_one_path_records_the_cost_once(
    any_store: SqlStore, database_url: str
) -> None:
    """``ReceiptStore.accept`` (the path the batch falls back to) fills the cost the same way."""
    from smsrelay.store.receipts import ReceiptStore

    await sent(any_store)
    store = ReceiptStore(any_store)
    now = datetime.now(UTC)

    def receipt(status: ReceiptStatus, cost: str) -> Receipt:
        return Receipt(
            provider_message_id=UUID,
            status=status,
            provider_status=status.value,
            cost=Decimal(cost),
            currency="USD",
        )

    await store.accept("plivo", "d1", [receipt(ReceiptStatus.PENDING, "0.0100")], now)
    await store.accept("plivo", "d2", [receipt(ReceiptStatus.PENDING, "0.0200")], now)
    await store.accept("plivo", "d3", [receipt(ReceiptStatus.DELIVERED, "0.0300")], now)
    assert await billed(any_store) == [(1, "sent", "0.0100", "USD")]


async def test_one_flush_bills_each_message_with_its_first_cost(
    any_store: SqlStore, database_url: str
) -> None:
    """Webhooks for three messages in one flush (two for m-0, in two rounds): one set-based
    update per round, each message's first reported cost and none added up."""
    for n in range(3):
        await sent(any_store, message_id=f"m-{n}", pmid=f"uuid-{n}")
    reports = [
        ("uuid-0", ReceiptStatus.PENDING, "0.0100", "USD"),
        ("uuid-1", ReceiptStatus.DELIVERED, "0.0200", "EUR"),
        ("uuid-0", ReceiptStatus.DELIVERED, "0.0400", "USD"),
        ("uuid-2", ReceiptStatus.DELIVERED, "oops", "dollars"),
    ]
    async with running_api(plivo_settings(database_url), any_store, MemoryPublisher()) as api:
        batcher = api.app.state.smsrelay.batcher
        flushes = batcher.flushes
        now = datetime.now(UTC)
        # Each accept() queues its webhook before its first await: one flush takes them all.
        await asyncio.gather(
            *(
                batcher.accept(
                    "plivo",
                    f"digest-{n}",
                    [
                        Receipt(
                            provider_message_id=pmid,
                            status=status,
                            provider_status=status.value,
                            cost=cost,
                            currency=currency,
                        )
                    ],
                    now,
                )
                for n, (pmid, status, cost, currency) in enumerate(reports)
            )
        )
        assert batcher.flushes == flushes + 1
    assert await billed(any_store, "m-0") == [(1, "sent", "0.0100", "USD")]
    assert await billed(any_store, "m-1") == [(1, "sent", "0.0200", "EUR")]
    assert await billed(any_store, "m-2") == [(1, "sent", None, None)]
