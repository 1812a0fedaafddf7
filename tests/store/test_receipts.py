"""The receipt store, on SQLite and PostgreSQL: history, state, matching, replays, purge."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import func, select

import smsrelay.store
from smsrelay.errors import StaleReceipt
from smsrelay.models import Receipt, ReceiptStatus, State, validate_request
from smsrelay.receipts import ReceiptRecord, apply_pending_receipts, next_state, resolve
from smsrelay.store import SqlStore
from smsrelay.store.batch import BatchingStore
from smsrelay.store.receipts import ReceiptStore
from smsrelay.store.schema import event_outbox, receipt_digests, receipts

NOW = datetime(2026, 12, 5, 12, 0, tzinfo=UTC)


@pytest.fixture
async def store(database_url: str) -> AsyncIterator[SqlStore]:
    """A migrated store on the test's own database."""
    store = SqlStore.from_url(database_url)
    await smsrelay.store.upgrade(store.engine)
    try:
        yield store
    finally:
        await store.close()


@pytest.fixture
def rstore(store: SqlStore) -> ReceiptStore:
    """The receipt store beside ``store``."""
    return ReceiptStore(store, replay_window=timedelta(days=30))


async def sent(store: SqlStore, message_id: str = "m-1", pmid: str = "SM1", **extra: Any) -> None:
    """A message recorded as sent by provider "tw" with provider id ``pmid``."""
    await store.claim(
        validate_request({"id": message_id, "to": "+14155550123", "body": "hi", **extra})
    )
    key = await store.start_attempt(message_id, 1, "tw")
    await store.finish_message(
        message_id,
        State.SENT,
        provider="tw",
        provider_message_id=pmid,
        segments=1,
        closing_attempt=key,
    )


def receipt(
    status: ReceiptStatus = ReceiptStatus.DELIVERED, pmid: str | None = "SM1", **kw: Any
) -> Receipt:
    """A receipt from "tw"."""
    return Receipt(provider_message_id=pmid, status=status, provider_status=status.value, **kw)


async def accept(
    rstore: ReceiptStore, *batch: Receipt, digest: str = "d1", now: datetime = NOW
) -> list[Any]:
    """Accept one webhook carrying ``batch``; the events it produced."""
    async with rstore.accepting("tw", digest, batch, now) as events:
        return events


async def count(store: SqlStore, table: Any) -> int:
    """Rows in ``table``."""
    async with store.engine.connect() as conn:
        return int((await conn.execute(select(func.count()).select_from(table))).scalar_one())


async def test_delivered_receipt_marks_a_sent_message_delivered(
    store: SqlStore, rstore: ReceiptStore
) -> None:
    """A delivered receipt matched by the provider's id sets `delivered` and yields its event."""
    await sent(store, tags={"team": "auth"})
    events = await accept(rstore, receipt(parts=1))
    record = await store.get("m-1")
    assert record is not None and record.state is State.DELIVERED
    [event] = events
    assert (event.id, event.state, event.provider, event.provider_message_id) == (
        "m-1",
        State.DELIVERED,
        "tw",
        "SM1",
    )
    assert event.segments == 1 and event.tags == {"team": "auth"} and event.attempt == 1
    [kept] = await rstore.receipts_for("m-1")
    assert kept.status is ReceiptStatus.DELIVERED and kept.received_at == NOW


async def test_pending_receipt_is_kept_and_changes_nothing(
    store: SqlStore, rstore: ReceiptStore
) -> None:
    """An intermediate report (queued, sent) joins the history but leaves the state `sent`."""
    await sent(store)
    assert await accept(rstore, receipt(ReceiptStatus.PENDING)) == []
    record = await store.get("m-1")
    assert record is not None and record.state is State.SENT
    assert [r.status for r in await rstore.receipts_for("m-1")] == [ReceiptStatus.PENDING]


async def test_failed_receipt_sets_failed_with_the_provider_code(
    store: SqlStore, rstore: ReceiptStore
) -> None:
    """A failed receipt ends the message `failed` with the provider's error code."""
    await sent(store)
    [event] = await accept(rstore, receipt(ReceiptStatus.FAILED, error_code="30003"))
    record = await store.get("m-1")
    assert record is not None and record.state is State.FAILED
    assert record.error_code == "tw:30003"
    assert event.error is not None and event.error.code == "tw:30003" and not event.error.retryable


async def test_multipart_message_is_delivered_only_when_every_part_is(
    store: SqlStore, rstore: ReceiptStore
) -> None:
    """Parts 1 and 2 of 3 delivered leave the message `sent`; the third delivers it."""
    await sent(store)
    assert (
        await accept(rstore, receipt(part=1, parts=3), receipt(part=2, parts=3), digest="a") == []
    )
    assert await accept(rstore, receipt(part=2, parts=3), digest="b") == []  # a repeat part
    record = await store.get("m-1")
    assert record is not None and record.state is State.SENT
    [event] = await accept(rstore, receipt(part=3, parts=3), digest="c")
    assert event.state is State.DELIVERED and event.segments == 3


async def test_an_undelivered_part_makes_the_message_undelivered(
    store: SqlStore, rstore: ReceiptStore
) -> None:
    """One part undelivered decides the message, whatever the other parts say."""
    await sent(store)
    [event] = await accept(
        rstore, receipt(part=1, parts=2), receipt(ReceiptStatus.UNDELIVERED, part=2, parts=2)
    )
    assert event.state is State.UNDELIVERED


async def test_receipt_before_the_send_is_kept_and_matched_later(
    store: SqlStore, rstore: ReceiptStore
) -> None:
    """A receipt for an unknown provider id is kept unmatched; recording the send then applies it."""
    assert await accept(rstore, receipt(pmid="SM-early")) == []
    assert [r.provider_message_id for r in await rstore.unmatched("tw")] == ["SM-early"]
    await sent(store, pmid="SM-early")
    [pending] = await rstore.match_pending_receipts("m-1", "tw", "SM-early")
    event = pending.event
    assert event.state is State.DELIVERED
    assert await rstore.unmatched("tw") == []
    assert len(await rstore.receipts_for("m-1")) == 1
    assert await rstore.match_pending_receipts("m-1", "tw", "SM-early") == []


async def test_receipt_for_our_id_waits_until_the_send_is_recorded(
    store: SqlStore, rstore: ReceiptStore
) -> None:
    """Matched by our id while the message is still `accepted`, a receipt is kept; the send applies it."""
    await store.claim(validate_request({"id": "m-1", "to": "+14155550123", "body": "hi"}))
    assert await accept(rstore, receipt(pmid=None, message_id="m-1")) == []
    record = await store.get("m-1")
    assert record is not None and record.state is State.ACCEPTED
    await store.finish_message("m-1", State.SENT, provider="tw", provider_message_id="SM1")
    assert await rstore.needs_matching("m-1", "tw", "SM1", State.SENT)
    [pending] = await rstore.match_pending_receipts("m-1", "tw", "SM1")
    event = pending.event
    assert event.state is State.DELIVERED
    assert not await rstore.needs_matching("m-1", "tw", "SM1", State.DELIVERED)


async def test_receipt_matches_through_an_earlier_attempt(
    store: SqlStore, rstore: ReceiptStore
) -> None:
    """A receipt for the id of an attempt (not the message's last provider id) still finds the message."""
    await sent(store, pmid="SM-final")
    key = await store.start_attempt("m-1", 2, "tw")
    await store.finish_attempt(key, "sent", provider_message_id="SM-other")
    [event] = await accept(rstore, receipt(pmid="SM-other"))
    assert event.id == "m-1"


async def test_same_webhook_twice_is_refused_as_replayed(
    store: SqlStore, rstore: ReceiptStore
) -> None:
    """A digest accepted before raises StaleReceipt and stores nothing the second time."""
    await sent(store)
    await accept(rstore, receipt(ReceiptStatus.PENDING))
    with pytest.raises(StaleReceipt, match="replayed"):
        await accept(rstore, receipt())
    assert len(await rstore.receipts_for("m-1")) == 1
    record = await store.get("m-1")
    assert record is not None and record.state is State.SENT


async def test_digest_older_than_the_window_no_longer_refuses(
    store: SqlStore, rstore: ReceiptStore
) -> None:
    """Past the replay window, the same digest is accepted again (the purge may not have run)."""
    await accept(rstore, receipt(), now=NOW - timedelta(days=31))
    await accept(rstore, receipt(), now=NOW)
    assert await count(store, receipt_digests) == 1


async def test_a_failed_publish_leaves_the_committed_event_in_the_outbox(
    store: SqlStore, rstore: ReceiptStore
) -> None:
    """Publishing happens after the commit: when it fails, the event waits in the outbox."""
    await sent(store)
    with pytest.raises(RuntimeError):
        async with rstore.accepting("tw", "d1", [receipt()], NOW):
            raise RuntimeError("broker down")
    record = await store.get("m-1")
    assert record is not None and record.state is State.DELIVERED
    [pending] = await rstore.outbox()
    assert pending.event.id == "m-1" and pending.event.state is State.DELIVERED
    await rstore.published([pending.key])
    assert await rstore.outbox() == []


async def test_the_event_is_in_the_outbox_until_published(
    store: SqlStore, rstore: ReceiptStore
) -> None:
    """accept() commits the state and its event together; published() removes the event."""
    await sent(store)
    accepted = await rstore.accept("tw", "d1", [receipt()], NOW)
    assert [p.event.state for p in await rstore.outbox()] == [State.DELIVERED]
    assert await rstore.outbox(older_than=NOW) == []  # the writer is still publishing it
    await rstore.published([p.key for p in accepted.events])
    assert await count(store, event_outbox) == 0


async def test_a_later_undelivered_never_undoes_delivered(
    store: SqlStore, rstore: ReceiptStore
) -> None:
    """Delivered, then undelivered: the message stays delivered, and no second event."""
    await sent(store)
    assert len(await accept(rstore, receipt(), digest="d1")) == 1
    assert await accept(rstore, receipt(ReceiptStatus.UNDELIVERED), digest="d2") == []
    record = await store.get("m-1")
    assert record is not None and record.state is State.DELIVERED


async def test_delivered_after_undelivered_moves_the_message_forward(
    store: SqlStore, rstore: ReceiptStore
) -> None:
    """Undelivered, then delivered (the carrier retried): delivered, with its own event."""
    await sent(store)
    await accept(rstore, receipt(ReceiptStatus.UNDELIVERED), digest="d1")
    [event] = await accept(rstore, receipt(), digest="d2")
    assert event.state is State.DELIVERED and event.error is None


async def test_the_same_report_in_new_bytes_is_kept_and_applied_once(
    store: SqlStore, rstore: ReceiptStore
) -> None:
    """An equal receipt under another digest (a provider's resend) is dropped: one row, one event."""
    await sent(store)
    assert len(await accept(rstore, receipt(), digest="d1")) == 1
    accepted = await rstore.accept("tw", "d2", [receipt()], NOW)
    assert accepted.kept == [] and accepted.events == []
    assert await count(store, receipts) == 1


async def test_refusals_are_recorded_newest_first(rstore: ReceiptStore) -> None:
    """refuse() keeps the provider, reason and time; refusals() lists them newest first."""
    await rstore.refuse("tw", "X-Twilio-Signature is missing", NOW)
    await rstore.refuse("tw", "replayed", NOW + timedelta(seconds=1))
    assert [(r.provider, r.reason) for r in await rstore.refusals()] == [
        ("tw", "replayed"),
        ("tw", "X-Twilio-Signature is missing"),
    ]


async def test_purge_forgets_old_refusals_digests_and_unmatched_receipts(
    store: SqlStore, rstore: ReceiptStore
) -> None:
    """Refusals, digests and never-matched receipts older than the cutoff go; newer ones stay."""
    old = NOW - timedelta(days=40)
    await rstore.refuse("tw", "old", old)
    await rstore.refuse("tw", "new", NOW)
    await accept(rstore, receipt(pmid="SM-old"), digest="old", now=old)
    await accept(rstore, receipt(pmid="SM-new"), digest="new", now=NOW)
    assert await rstore.purge(NOW - timedelta(days=30)) == 3
    assert [r.reason for r in await rstore.refusals()] == ["new"]
    assert [r.provider_message_id for r in await rstore.unmatched("tw")] == ["SM-new"]


async def test_purging_a_message_takes_its_receipts(store: SqlStore, rstore: ReceiptStore) -> None:
    """Matched receipts belong to the message: the store's purge deletes them with it."""
    await sent(store)
    await accept(rstore, receipt())
    await store.purge(NOW + timedelta(days=1))
    assert await count(store, receipts) == 0


def record(
    status: ReceiptStatus, part: int | None = None, parts: int | None = None, minute: int = 0
) -> ReceiptRecord:
    """A stored receipt received at NOW + ``minute``."""
    return ReceiptRecord(
        "tw", "SM1", status, status.value, None, part, parts, None, NOW + timedelta(minutes=minute)
    )


def test_latest_report_of_a_part_wins() -> None:
    """A part first undelivered, then delivered (the carrier retried), counts as delivered."""
    history = [
        record(ReceiptStatus.UNDELIVERED, 1, 1, minute=0),
        record(ReceiptStatus.DELIVERED, 1, 1, minute=1),
    ]
    assert resolve(history) is ReceiptStatus.DELIVERED


def test_a_final_report_is_not_replaced_by_a_lower_or_equal_one() -> None:
    """Delivered then undelivered stays delivered; undelivered then failed stays undelivered."""
    history = [record(ReceiptStatus.DELIVERED, 1, 1), record(ReceiptStatus.UNDELIVERED, 1, 1, 1)]
    assert resolve(history) is ReceiptStatus.DELIVERED
    history = [record(ReceiptStatus.UNDELIVERED), record(ReceiptStatus.FAILED, minute=1)]
    assert resolve(history) is ReceiptStatus.UNDELIVERED


def test_state_moves_only_forward() -> None:
    """From sent to final, from undelivered to delivered; never back, never sideways."""
    delivered, undelivered = record(ReceiptStatus.DELIVERED), record(ReceiptStatus.UNDELIVERED)
    assert next_state(State.SENT, [undelivered]) is State.UNDELIVERED
    assert next_state(State.UNDELIVERED, [undelivered, delivered]) is State.DELIVERED
    assert next_state(State.DELIVERED, [undelivered]) is None
    assert next_state(State.FAILED, [undelivered]) is None
    assert next_state(State.ACCEPTED, [delivered]) is None


def test_pending_never_overrides_a_final_report() -> None:
    """A late `pending` (a carrier's echo) after `delivered` leaves it delivered."""
    history = [record(ReceiptStatus.DELIVERED, minute=0), record(ReceiptStatus.PENDING, minute=1)]
    assert resolve(history) is ReceiptStatus.DELIVERED


def test_only_pending_reports_decide_nothing() -> None:
    """With nothing but intermediate reports there is no final status."""
    assert resolve([record(ReceiptStatus.PENDING)]) is None


class Sink:
    """An event sink that keeps what it is given."""

    def __init__(self) -> None:
        self.events: list[Any] = []

    async def publish(self, event: Any) -> None:
        self.events.append(event)


async def test_worker_hook_applies_a_receipt_that_overtook_the_send(
    store: SqlStore, rstore: ReceiptStore
) -> None:
    """apply_pending_receipts (called after SENT) links the early receipt and publishes `delivered`."""
    await accept(rstore, receipt(pmid="SM-early"))
    await sent(store, pmid="SM-early")
    sink = Sink()
    await apply_pending_receipts(BatchingStore(store), sink, "m-1", "tw", "SM-early")
    assert [e.state for e in sink.events] == [State.DELIVERED]
    record = await store.get("m-1")
    assert record is not None and record.state is State.DELIVERED


async def test_worker_hook_does_nothing_without_receipts(store: SqlStore) -> None:
    """For the usual message no receipt has reached, nothing is written or published."""
    await sent(store)
    sink = Sink()
    await apply_pending_receipts(store, sink, "m-1", "tw", "SM1")
    assert sink.events == []
    record = await store.get("m-1")
    assert record is not None and record.state is State.SENT


class DownSink:
    """An event sink whose broker is down."""

    async def publish(self, event: Any) -> None:
        raise ConnectionError("broker down")


async def test_worker_hook_leaves_an_unpublished_event_in_the_outbox(
    store: SqlStore, rstore: ReceiptStore
) -> None:
    """When the worker cannot publish, the state is committed and the event waits for a drain."""
    await accept(rstore, receipt(pmid="SM-early"))
    await sent(store, pmid="SM-early")
    await apply_pending_receipts(BatchingStore(store), DownSink(), "m-1", "tw", "SM-early")
    record = await store.get("m-1")
    assert record is not None and record.state is State.DELIVERED
    assert [p.event.state for p in await rstore.outbox()] == [State.DELIVERED]
