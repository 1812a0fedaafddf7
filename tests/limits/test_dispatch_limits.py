"""The dispatcher with a LimitGate: what a rate limit, a 429 and a spend cap do to one
message (a migrated SQLite store, simulator providers, in-process limits)."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

from smsrelay.dispatch import Dispatcher, Done, Retry
from smsrelay.economics.prices import Price, PriceTable
from smsrelay.limits.build import build_limit_gate
from smsrelay.limits.gate import LimitGate
from smsrelay.limits.settings import LimitSettings, RateLimit, SpendCapSettings
from smsrelay.models import State
from smsrelay.routing import RouteConfig, Router
from smsrelay.store import SqlStore
from tests.test_dispatch import RETRY, EventList, RateLimitedProvider, raw, simulator

NO_WAIT = LimitSettings(max_wait=0, otp_share=0)


def gate(rates: dict[str, RateLimit | None], caps: dict[str, object] | None = None) -> LimitGate:
    spend = SpendCapSettings.model_validate(caps or {})
    return build_limit_gate(None, rates, spend, NO_WAIT)


def make(
    store: SqlStore, providers: list[object], route: RouteConfig, limits: LimitGate
) -> tuple[Dispatcher, EventList]:
    sink = EventList()
    table = {p.name: p for p in providers}  # type: ignore[attr-defined]
    price = Price("a", "US", Decimal("0.01"), "USD", datetime(2026, 1, 1, tzinfo=UTC))
    router = Router({"*": route}, prices=PriceTable([price]), limits=limits)
    return Dispatcher(store, table, router, sink, RETRY, limits=limits), sink


async def test_at_its_rate_limit_a_provider_is_waited_for_not_passed_over(store: SqlStore) -> None:
    """on_rate_limit wait: a provider out of tokens sends the message later, never the backup."""
    a, b = simulator("a"), simulator("b")
    limits = gate({"a": RateLimit(per_second=0.001, burst=1), "b": None})
    d, sink = make(store, [a, b], RouteConfig(providers=["a", "b"]), limits)
    assert await d.handle(raw("m1")) == Done(State.SENT)
    outcome = await d.handle(raw("m2"))
    assert isinstance(outcome, Retry) and outcome.attempt == 1
    assert [r.id for r in a.sent] == ["m1"] and b.sent == []
    assert sink.events[-1].error is not None and sink.events[-1].error.code == "rate-limited"


async def test_on_rate_limit_next_moves_to_the_next_candidate(store: SqlStore) -> None:
    """on_rate_limit next: a provider out of tokens is passed over for the next one at once."""
    a, b = simulator("a"), simulator("b")
    limits = gate({"a": RateLimit(per_second=0.001, burst=1), "b": None})
    d, _ = make(store, [a, b], RouteConfig(providers=["a", "b"], on_rate_limit="next"), limits)
    assert await d.handle(raw("m1")) == Done(State.SENT)
    assert await d.handle(raw("m2")) == Done(State.SENT)
    assert [r.id for r in a.sent] == ["m1"] and [r.id for r in b.sent] == ["m2"]


async def test_a_429_is_back_pressure_not_a_failover(store: SqlStore) -> None:
    """A limited provider's 429 pauses it and sends the message later; the backup is not tried."""
    limited, backup = RateLimitedProvider("a", retry_after=3), simulator("b")
    limits = gate({"a": RateLimit(per_second=100), "b": None})
    d, _ = make(store, [limited, backup], RouteConfig(providers=["a", "b"]), limits)
    outcome = await d.handle(raw("m1"))
    assert isinstance(outcome, Retry) and outcome.delay >= 1.0 and outcome.attempt == 1
    assert backup.sent == []
    assert limits.state("a", "US").rate_limited
    paused = await limits.admit("a", "US", sender=None, otp=False, cost=None, currency=None, wait=0)
    assert paused is not None, "paused for the Retry-After"


async def test_nothing_left_under_the_caps_fails_with_spend_cap_reached(store: SqlStore) -> None:
    """Once the only provider's cap is spent the next message fails with spend-cap-reached."""
    a = simulator("a")
    limits = gate({"a": None}, {"total": {"day": "0.01"}})
    d, sink = make(store, [a], RouteConfig(providers=["a"]), limits)
    assert await d.handle(raw("m0")) == Done(State.SENT), "0.01 of 0.01"
    assert await d.handle(raw("m1")) == Done(State.FAILED)
    assert [r.id for r in a.sent] == ["m0"]
    assert sink.events[-1].error is not None and sink.events[-1].error.code == "spend-cap-reached"
    # The planner now leaves it out too, and the code stays the same.
    assert await d.handle(raw("m2")) == Done(State.FAILED)
    assert sink.events[-1].error is not None and sink.events[-1].error.code == "spend-cap-reached"
