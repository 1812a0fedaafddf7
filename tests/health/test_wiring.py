"""Health wired into a real worker: breakers skip providers, receipts from the store feed them.

Real RabbitMQ (own vhost), a real store, providers on loopback (a Twilio-format fake that
can hang) or the simulator. Receipts are applied through ``ReceiptStore`` on a store
object of their own, as the API process does, and reach the worker only through the
database.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from smsrelay.health import BreakerState
from smsrelay.models import Receipt, ReceiptStatus
from smsrelay.routing.configured import explain_request
from smsrelay.store import SqlStore
from smsrelay.store.receipts import ReceiptStore
from tests.conftest import eventually
from tests.fakes.twilio import ACCOUNT_SID, AUTH_TOKEN, TwilioFake
from tests.integration.harness import EventLog, event_log, publish_raw, request, running_worker

TIMEOUT = 2.0


def _twilio(url: str, **extra: Any) -> dict[str, Any]:
    return {
        "type": "twilio",
        "base_url": url,
        "account_sid": ACCOUNT_SID,
        "auth_token": AUTH_TOKEN,
        "sender": "+14155550100",
        "timeout": TIMEOUT,
        **extra,
    }


def _final(events: EventLog, ids: Sequence[str], state: str = "sent") -> bool:
    return all(state in events.states(mid) for mid in ids)


def _provider_of(events: EventLog, mid: str, state: str = "sent") -> str | None:
    return next((e["provider"] for e in events.of(mid) if e["state"] == state), None)


async def test_hung_provider_opens_its_breaker_and_later_messages_skip_it(
    amqp_url: str, sqlite_url: str
) -> None:
    """Two timeouts open the hung primary's breaker: later messages go to the backup without trying it."""
    run = uuid.uuid4().hex[:6]
    async with TwilioFake() as primary, TwilioFake() as backup:
        first = [f"hung-{run}-{i}" for i in range(2)]
        later = [f"after-{run}-{i}" for i in range(10)]
        numbers = {mid: f"+1415555{2000 + i:04d}" for i, mid in enumerate(first + later)}
        for number in numbers.values():
            primary.hang(number)
        overrides = {
            "providers": {
                "primary": _twilio(primary.url, retry_unknown_outcome=True),
                "backup": _twilio(backup.url),
            },
            "routes": {"*": ["primary", "backup"]},
        }
        async with (
            event_log(amqp_url) as events,
            running_worker(amqp_url, sqlite_url, **overrides) as rt,
        ):
            await publish_raw(amqp_url, [request(mid, numbers[mid]) for mid in first])
            await eventually(lambda: _final(events, first), seconds=30)
            assert rt.monitor is not None
            assert rt.monitor.status("primary", "US").state is BreakerState.OPEN
            await publish_raw(amqp_url, [request(mid, numbers[mid]) for mid in later])
            await eventually(lambda: _final(events, later), seconds=30)
            records = [await rt.store.get(mid) for mid in later]
    assert len(primary.received) == len(first), "a message waited for the hung provider"
    assert {_provider_of(events, mid) for mid in first + later} == {"backup"}
    for record in records:
        assert record is not None
        assert [a.provider for a in record.attempts] == ["backup"]


async def _receipts(
    api_store: SqlStore, events: EventLog, ids: Sequence[str], delivered: int
) -> None:
    """Apply one final receipt per message, as the API would: the first ``delivered`` delivered."""
    receipts = ReceiptStore(api_store)
    for n, mid in enumerate(ids):
        pmid = next(e["provider_message_id"] for e in events.of(mid) if e["state"] == "sent")
        status = ReceiptStatus.DELIVERED if n < delivered else ReceiptStatus.UNDELIVERED
        receipt = Receipt(provider_message_id=pmid, status=status, provider_status=status.value)
        await receipts.accept("cheap", uuid.uuid4().hex, [receipt], datetime.now(UTC))


async def test_receipts_turning_undelivered_move_that_country_to_the_next_provider(
    amqp_url: str, pg_url: str
) -> None:
    """Mostly undelivered GB receipts, applied by another process, open cheap's GB breaker: GB moves to backup, US stays."""
    run = uuid.uuid4().hex[:6]
    overrides: dict[str, Any] = {
        "providers": {"cheap": {"type": "simulator"}, "backup": {"type": "simulator"}},
        "routes": {"*": ["cheap", "backup"]},
        "health": {
            "receipt_poll_interval": 0.1,
            "breakers": {"min_samples": 8, "min_delivery_rate": 0.5},
        },
    }
    gb = [f"gb-{run}-{i}" for i in range(10)]
    us = [f"us-{run}-{i}" for i in range(10)]
    gb_to, us_to = "+447400123453", "+14155550123"
    api_store = SqlStore.from_url(pg_url)
    try:
        async with (
            event_log(amqp_url) as events,
            running_worker(amqp_url, pg_url, **overrides) as rt,
        ):
            bodies = [request(m, gb_to) for m in gb] + [request(m, us_to) for m in us]
            await publish_raw(amqp_url, bodies)
            await eventually(lambda: _final(events, gb + us), seconds=30)
            assert {_provider_of(events, mid) for mid in gb + us} == {"cheap"}
            await _receipts(api_store, events, gb, delivered=2)
            await _receipts(api_store, events, us, delivered=10)
            monitor = rt.monitor
            assert monitor is not None
            await eventually(lambda: monitor.status("cheap", "GB").state is BreakerState.OPEN)
            more_gb = [f"gb2-{run}-{i}" for i in range(5)]
            more_us = [f"us2-{run}-{i}" for i in range(5)]
            bodies = [request(m, gb_to) for m in more_gb] + [request(m, us_to) for m in more_us]
            await publish_raw(amqp_url, bodies)
            await eventually(lambda: _final(events, more_gb + more_us), seconds=30)
            us_breaker = monitor.status("cheap", "US").state
            us_rate = monitor.snapshot("cheap", "US").observed_rate
            plan = rt.router().plan(explain_request(gb_to))
    finally:
        await api_store.close()
    assert {_provider_of(events, mid) for mid in more_gb} == {"backup"}
    assert {_provider_of(events, mid) for mid in more_us} == {"cheap"}
    assert us_breaker is BreakerState.CLOSED and us_rate == 1.0
    assert plan.providers == ["backup", "cheap"]  # an open breaker goes last
    cheap = plan.candidate("cheap")
    assert cheap is not None and cheap.breaker == "open"
