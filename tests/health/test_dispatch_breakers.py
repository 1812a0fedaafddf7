"""The dispatcher asks each provider's breaker before sending and counts every attempt.

A real ``HealthMonitor`` on a fake clock, a migrated SQLite store, simulator providers.
"""

from __future__ import annotations

import pytest

from smsrelay.dispatch import Dispatcher, Done, Retry
from smsrelay.health import BreakerState, HealthMonitor, HealthSettings, SendOutcome
from smsrelay.health.settings import BreakerSettings
from smsrelay.health.view import MonitorView
from smsrelay.models import State
from smsrelay.routing import Router
from smsrelay.store import SqlStore
from tests.test_dispatch import RETRY, EventList, raw, record, simulator


@pytest.fixture
def sink() -> EventList:
    """The events the dispatcher published."""
    return EventList()


class Clock:
    """A clock the test moves."""

    def __init__(self) -> None:
        self.now = 1_000.0

    def __call__(self) -> float:
        return self.now


def _monitor(clock: Clock) -> HealthMonitor:
    settings = HealthSettings(breakers=BreakerSettings(failures=2, cool_down=30))
    return HealthMonitor(settings, clock=clock)


def _dispatcher(store: SqlStore, sink: EventList, monitor: HealthMonitor) -> Dispatcher:
    providers = {p.name: p for p in (simulator("alpha"), simulator("beta"))}
    router = Router({"*": ["alpha", "beta"]}, health=MonitorView(monitor))
    return Dispatcher(store, providers, router, sink, RETRY, health=monitor)


async def test_a_provider_whose_breaker_is_open_is_skipped(
    store: SqlStore, sink: EventList
) -> None:
    """alpha's US breaker is open: the message goes to beta as attempt 1; alpha is not tried."""
    monitor = _monitor(Clock())
    for _ in range(2):
        monitor.record_send("alpha", "US", SendOutcome.TRANSIENT)
    outcome = await _dispatcher(store, sink, monitor).handle(raw())
    stored = await record(store)
    assert outcome == Done(State.SENT)
    assert [a.provider for a in stored.attempts] == ["beta"]
    assert monitor.snapshot("beta", "US").sent == 1


async def test_every_breaker_open_takes_the_retry_path(store: SqlStore, sink: EventList) -> None:
    """Nothing left to try because every breaker is open: a delayed retry, nothing sent or failed."""
    monitor = _monitor(Clock())
    for name in ("alpha", "beta"):
        for _ in range(2):
            monitor.record_send(name, "US", SendOutcome.TRANSIENT)
    outcome = await _dispatcher(store, sink, monitor).handle(raw())
    stored = await record(store)
    assert isinstance(outcome, Retry)
    assert stored.attempts == []
    assert sink.events[-1].error is not None
    assert sink.events[-1].error.code == "alpha:breaker-open"


async def test_a_half_open_breaker_lets_one_probe_through_and_closes(
    store: SqlStore, sink: EventList
) -> None:
    """After the cool-down, alpha gets one probe (taken once, not twice); its success closes the breaker."""
    clock = Clock()
    monitor = _monitor(clock)
    for _ in range(2):
        monitor.record_send("alpha", "US", SendOutcome.TRANSIENT)
    clock.now += 31
    assert monitor.status("alpha", "US").state is BreakerState.HALF_OPEN
    outcome = await _dispatcher(store, sink, monitor).handle(raw())
    stored = await record(store)
    assert outcome == Done(State.SENT)
    assert [a.provider for a in stored.attempts] == ["alpha"]
    assert monitor.status("alpha", "US").state is BreakerState.CLOSED


async def test_each_attempt_outcome_is_counted(store: SqlStore, sink: EventList) -> None:
    """A transient failure at alpha and the send at beta are both counted for US."""
    monitor = _monitor(Clock())
    providers = {
        "alpha": simulator("alpha", failure_rate=1.0),
        "beta": simulator("beta"),
    }
    router = Router({"*": ["alpha", "beta"]})
    dispatcher = Dispatcher(store, providers, router, sink, RETRY, health=monitor)
    assert await dispatcher.handle(raw()) == Done(State.SENT)
    assert monitor.snapshot("alpha", "US").transient == 1
    assert monitor.snapshot("beta", "US").sent == 1
