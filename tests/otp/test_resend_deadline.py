"""Receipt-deadline resend of OTPs: real broker, real store, real worker, two loopback Twilios."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from smsrelay import topology as t
from smsrelay.health import SendOutcome
from smsrelay.models import Receipt, ReceiptStatus, State
from smsrelay.otp.resend_deadline import Deadline
from smsrelay.runtime import Runtime
from smsrelay.store import SqlStore
from smsrelay.store.receipts import ReceiptStore
from tests.conftest import eventually, queue_depth
from tests.fakes.twilio import ACCOUNT_SID, AUTH_TOKEN, TwilioFake
from tests.integration.harness import EventLog, event_log, publish_raw, running_worker
from tests.integration.test_cli import smsrelay

TO = "+14155550123"
CODE_TEXT = "Your code is 482913"


@dataclass
class Bench:
    """Two providers (``a`` first in the route, then ``b``) and the events of the vhost."""

    a: TwilioFake
    b: TwilioFake
    events: EventLog
    amqp_url: str
    database_url: str

    def settings(self, **overrides: Any) -> dict[str, Any]:
        """Worker settings: route ``*`` → [a, b] on the two fakes."""
        providers = {name: _twilio(fake) for name, fake in (("a", self.a), ("b", self.b))}
        return {"providers": providers, "routes": {"*": ["a", "b"]}, **overrides}

    def worker(self, **overrides: Any) -> Any:
        """A running worker on this bench."""
        return running_worker(self.amqp_url, self.database_url, **self.settings(**overrides))

    def resent(self, message_id: str) -> list[dict[str, Any]]:
        """The events of ``message_id`` marked as resends."""
        return [e for e in self.events.of(message_id) if e.get("resend")]


def _twilio(fake: TwilioFake) -> dict[str, Any]:
    return {
        "type": "twilio",
        "base_url": fake.url,
        "account_sid": ACCOUNT_SID,
        "auth_token": AUTH_TOKEN,
        "sender": "+14155550100",
    }


@asynccontextmanager
async def bench(amqp_url: str, database_url: str) -> AsyncIterator[Bench]:
    """The fakes and the event log, started; stopped on exit."""
    async with AsyncExitStack() as stack:
        a = await stack.enter_async_context(TwilioFake())
        b = await stack.enter_async_context(TwilioFake())
        events = await stack.enter_async_context(event_log(amqp_url))
        yield Bench(a, b, events, amqp_url, database_url)


def otp(message_id: str, **extra: Any) -> bytes:
    """A v1 OTP request body."""
    fields = {"id": message_id, "to": TO, "body": CODE_TEXT, "kind": "otp", **extra}
    return json.dumps(fields).encode()


def new_id() -> str:
    return f"otp-{uuid.uuid4().hex[:10]}"


def checks(runtime: Runtime, result: str) -> float:
    """Receipt deadlines the runtime checked with ``result``."""
    value = runtime.metrics.registry.get_sample_value(
        "smsrelay_resend_checks_total", {"result": result}
    )
    return value or 0.0


def resends(runtime: Runtime, provider: str, outcome: str = "sent") -> float:
    """Resends counted for ``provider`` with ``outcome``."""
    labels = {"provider": provider, "outcome": outcome}
    return runtime.metrics.registry.get_sample_value("smsrelay_resends_total", labels) or 0.0


async def sent_pmid(store: SqlStore, message_id: str) -> str:
    """Wait until ``message_id`` is recorded sent; its provider message id."""

    async def recorded() -> bool:
        record = await store.get(message_id)
        return record is not None and record.provider_message_id is not None

    await eventually(recorded)
    record = await store.get(message_id)
    assert record is not None and record.provider_message_id is not None
    return record.provider_message_id


async def deliver(store: SqlStore, provider: str, pmid: str) -> None:
    """Keep a ``delivered`` receipt from ``provider`` (as the receipts API does)."""
    receipt = Receipt(
        provider_message_id=pmid, status=ReceiptStatus.DELIVERED, provider_status="delivered"
    )
    await ReceiptStore(store).accept(provider, uuid.uuid4().hex, [receipt], datetime.now(UTC))


async def test_no_receipt_by_the_deadline_resends_once_through_the_other_provider(
    amqp_url: str, pg_url: str
) -> None:
    """No delivered receipt by resend_after: the same body goes once through b, recorded, counted, marked."""
    message_id = new_id()
    async with bench(amqp_url, pg_url) as b, b.worker() as worker:
        await publish_raw(amqp_url, [otp(message_id, resend_after=1)], routing_key="sms.otp")
        await eventually(lambda: b.resent(message_id))
        await eventually(lambda: checks(worker, "resent") == 1)
        record = await worker.store.get(message_id)
        marked = b.resent(message_id)

    assert [e["provider"] for e in marked] == ["b"]
    assert marked[0]["resend"] == 1 and marked[0]["state"] == "sent"
    assert [e.get("resend", 0) for e in b.events.of(message_id)] == [0, 1]
    assert [r.form["Body"] for r in b.a.received] == [CODE_TEXT]
    assert [r.form["Body"] for r in b.b.received] == [CODE_TEXT]
    assert record is not None and record.resends == 1
    assert [(a.number, a.provider, a.outcome) for a in record.attempts] == [
        (1, "a", "sent"),
        (2, "b", "sent"),
    ]
    assert record.state is State.SENT and record.provider == "b"
    assert resends(worker, "b") == 1


async def test_delivered_receipt_before_the_deadline_means_no_resend(
    amqp_url: str, sqlite_url: str
) -> None:
    """A delivered receipt before resend_after: the deadline finds it, nothing is resent."""
    message_id = new_id()
    async with bench(amqp_url, sqlite_url) as b, b.worker() as worker:
        await publish_raw(amqp_url, [otp(message_id, resend_after=2)], routing_key="sms.otp")
        await deliver(worker.store, "a", await sent_pmid(worker.store, message_id))
        await eventually(lambda: checks(worker, "delivered") == 1)
        record = await worker.store.get(message_id)

    assert b.b.received == []
    assert b.resent(message_id) == []
    assert record is not None and record.resends == 0 and record.state is State.DELIVERED


async def test_expired_message_is_never_resent(amqp_url: str, sqlite_url: str) -> None:
    """expires_at before the deadline: the check finds it expired and sends nothing."""
    message_id = new_id()
    async with bench(amqp_url, sqlite_url) as b, b.worker() as worker:
        expires = (datetime.now(UTC) + timedelta(seconds=3)).isoformat()
        body = otp(message_id, resend_after=4, expires_at=expires)
        await publish_raw(amqp_url, [body], routing_key="sms.otp")
        await sent_pmid(worker.store, message_id)  # sent in time: only the resend is late
        await eventually(lambda: checks(worker, "expired") == 1)
        record = await worker.store.get(message_id)

    assert len(b.a.received) == 1 and b.b.received == []
    assert record is not None and record.resends == 0 and record.state is State.SENT


async def test_max_resends_is_respected(amqp_url: str, sqlite_url: str) -> None:
    """With max_resends 2: a resend through b, then through a, then no deadline is left."""
    message_id = new_id()
    async with bench(amqp_url, sqlite_url) as b, b.worker(resend={"max_resends": 2}) as worker:
        await publish_raw(amqp_url, [otp(message_id, resend_after=1)], routing_key="sms.otp")
        await eventually(lambda: checks(worker, "resent") == 2)
        # Nothing parked or waiting for a check any more: no third resend can come.
        await eventually(lambda: _resend_queues_empty(amqp_url))
        record = await worker.store.get(message_id)

    assert [e["provider"] for e in b.resent(message_id)] == ["b", "a"]
    assert [e["resend"] for e in b.resent(message_id)] == [1, 2]
    assert len(b.a.received) == 2 and len(b.b.received) == 1
    assert record is not None and record.resends == 2


async def test_max_resends_zero_sends_no_resend(amqp_url: str, sqlite_url: str) -> None:
    """max_resends 0 turns resends off, whatever resend_after the request asks for."""
    message_id = new_id()
    async with bench(amqp_url, sqlite_url) as b, b.worker(resend={"max_resends": 0}) as worker:
        await publish_raw(amqp_url, [otp(message_id, resend_after=1)], routing_key="sms.otp")
        await eventually(lambda: checks(worker, "max-resends") == 1)

    assert b.b.received == [] and b.resent(message_id) == []


async def test_late_receipt_from_the_first_provider_delivers_the_message(
    amqp_url: str, sqlite_url: str
) -> None:
    """After the resend through b, a's late delivered receipt is kept and delivers the message."""
    message_id = new_id()
    async with bench(amqp_url, sqlite_url) as b, b.worker() as worker:
        await publish_raw(amqp_url, [otp(message_id, resend_after=1)], routing_key="sms.otp")
        await eventually(lambda: b.resent(message_id))
        first = await worker.store.get(message_id)
        assert first is not None
        a_pmid = first.attempts[0].provider_message_id
        assert a_pmid is not None and first.provider == "b"
        await deliver(worker.store, "a", a_pmid)
        record = await worker.store.get(message_id)
        kept = await ReceiptStore(worker.store).receipts_for(message_id)

    assert record is not None and record.state is State.DELIVERED
    assert [(r.provider, r.provider_message_id, r.status) for r in kept] == [
        ("a", a_pmid, ReceiptStatus.DELIVERED)
    ]


async def test_route_resend_after_applies_to_otp_without_its_own(
    amqp_url: str, sqlite_url: str
) -> None:
    """A route's resend_after resends a v1 OTP request that knows nothing of the field."""
    message_id = new_id()
    async with bench(amqp_url, sqlite_url) as b:
        route = {"*": {"providers": ["a", "b"], "resend_after": 1}}
        async with b.worker(routes=route) as worker:
            await publish_raw(amqp_url, [otp(message_id)], routing_key="sms.otp")
            await eventually(lambda: b.resent(message_id))
            await eventually(lambda: checks(worker, "resent") == 1)

    assert [e["provider"] for e in b.resent(message_id)] == ["b"]


async def test_worker_restart_between_send_and_deadline_still_resends(
    amqp_url: str, pg_url: str
) -> None:
    """The deadline lives in the broker: a worker started after the sender stopped resends."""
    message_id = new_id()
    async with bench(amqp_url, pg_url) as b:
        async with b.worker() as first:
            await publish_raw(amqp_url, [otp(message_id, resend_after=3)], routing_key="sms.otp")
            await sent_pmid(first.store, message_id)
        assert b.resent(message_id) == [] and b.b.received == []
        async with b.worker() as second:
            await eventually(lambda: b.resent(message_id))
            await eventually(lambda: checks(second, "resent") == 1)
            record = await second.store.get(message_id)

    assert [e["provider"] for e in b.resent(message_id)] == ["b"]
    assert len(b.a.received) == 1 and len(b.b.received) == 1
    assert record is not None and record.resends == 1


async def test_two_workers_and_copies_of_a_deadline_resend_once(amqp_url: str, pg_url: str) -> None:
    """Two worker processes' worth of consumers and three copies of one deadline: one resend."""
    message_id = new_id()
    body = otp(message_id, resend_after=2)
    async with bench(amqp_url, pg_url) as b, b.worker() as one, b.worker() as two:
        await publish_raw(amqp_url, [body], routing_key="sms.otp")
        await sent_pmid(one.store, message_id)
        assert one.resend_deadlines is not None
        for _ in range(2):  # as a redelivered send would park it again
            await one.resend_deadlines.park(Deadline(body, 1, time.time() + 1), message_id)

        def checked(result: str) -> float:
            return checks(one, result) + checks(two, result)

        await eventually(lambda: checked("resent") + checked("taken") == 3)
        record = await one.store.get(message_id)

    assert checked("resent") == 1
    assert len(b.b.received) == 1 and len(b.resent(message_id)) == 1
    assert record is not None and record.resends == 1


async def test_resend_skips_a_provider_whose_breaker_is_open(
    amqp_url: str, sqlite_url: str
) -> None:
    """Route a, b, c with b's breaker open: the resend after a goes to c, the next healthy one."""
    message_id = new_id()
    async with bench(amqp_url, sqlite_url) as b, TwilioFake() as c:
        providers = {"a": _twilio(b.a), "b": _twilio(b.b), "c": _twilio(c)}
        overrides = {"providers": providers, "routes": {"*": ["a", "b", "c"]}}
        async with running_worker(amqp_url, sqlite_url, **overrides) as worker:
            assert worker.monitor is not None
            for _ in range(worker.settings.health.breakers.failures):
                worker.monitor.record_send("b", "US", SendOutcome.TRANSIENT)
            assert not worker.monitor.allow("b", "US")
            await publish_raw(amqp_url, [otp(message_id, resend_after=1)], routing_key="sms.otp")
            await eventually(lambda: b.resent(message_id))

    assert [e["provider"] for e in b.resent(message_id)] == ["c"]
    assert b.b.received == [] and len(c.received) == 1


async def test_forged_deadline_with_another_text_is_not_resent(
    amqp_url: str, sqlite_url: str
) -> None:
    """A deadline whose request is not the one its id was taken for sends nothing."""
    message_id = new_id()
    forged = json.dumps({"id": message_id, "to": TO, "body": "Call +1900…", "kind": "otp"})
    async with bench(amqp_url, sqlite_url) as b, b.worker(digest_key="k" * 32) as worker:
        await publish_raw(amqp_url, [otp(message_id, resend_after=600)], routing_key="sms.otp")
        await sent_pmid(worker.store, message_id)
        assert worker.resend_deadlines is not None
        deadline = Deadline(forged.encode(), 1, time.time())
        await worker.resend_deadlines.park(deadline, message_id)
        await eventually(lambda: checks(worker, "taken") == 1)
        record = await worker.store.get(message_id)

    assert b.b.received == [] and len(b.a.received) == 1
    assert record is not None and record.resends == 0


def _resend_queues_empty(amqp_url: str) -> bool:
    queues = [t.resend_queue(tier) for tier in t.RESEND_TIERS] + [t.RESEND_CHECK_QUEUE]
    return all(queue_depth(amqp_url, q) == (0, 0) for q in queues)


def test_topology_apply_declares_the_resend_queues(amqp_url: str, tmp_path: Path) -> None:
    """`smsrelay topology apply` declares sms.resend's tiers and sms.resend.check."""
    result = smsrelay("topology", "apply", env={"SMSRELAY_AMQP_URL": amqp_url}, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert _resend_queues_empty(amqp_url)
