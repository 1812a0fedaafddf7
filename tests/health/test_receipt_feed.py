"""The receipt feed reads final receipts from the store (SQLite and PostgreSQL) for the monitor."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime

import pytest

from smsrelay.health.receipt_feed import ReceiptFeed
from smsrelay.models import Receipt, ReceiptStatus, State, validate_request
from smsrelay.store import SqlStore, upgrade
from smsrelay.store.health import HealthReads
from smsrelay.store.receipts import ReceiptStore
from tests.conftest import eventually


class Recorder:
    """A ``ReceiptSink`` that keeps what it was fed."""

    def __init__(self) -> None:
        self.fed: list[tuple[str, str, bool, float | None]] = []

    def record_receipt(
        self, provider: str, country: str, delivered: bool, latency_seconds: float | None
    ) -> None:
        self.fed.append((provider, country, delivered, latency_seconds))


@pytest.fixture
async def db(database_url: str) -> AsyncIterator[SqlStore]:
    store = SqlStore.from_url(database_url)
    await upgrade(store.engine)
    try:
        yield store
    finally:
        await store.close()


async def _sent(store: SqlStore, to: str, provider: str = "p") -> tuple[str, str]:
    """A message recorded as sent by ``provider``; returns (id, provider message id)."""
    mid, pmid = f"m-{uuid.uuid4().hex[:8]}", f"pm-{uuid.uuid4().hex[:8]}"
    claim = await store.claim(validate_request({"id": mid, "to": to, "body": "hi"}), provider)
    await store.finish_message(
        mid, State.SENT, provider=provider, provider_message_id=pmid,
        closing_attempt=claim.first_attempt,
    )  # fmt: skip
    return mid, pmid


async def _receipt(
    store: SqlStore, pmid: str, status: ReceiptStatus, part: int | None = None
) -> None:
    receipt = Receipt(
        provider_message_id=pmid,
        status=status,
        provider_status=status.value,
        part=part,
        parts=2 if part else None,
    )
    await ReceiptStore(store).accept("p", uuid.uuid4().hex, [receipt], datetime.now(UTC))


async def test_each_message_counts_once_with_its_country_and_latency(db: SqlStore) -> None:
    """Two final receipts of one message feed one outcome; pending ones feed nothing; latency is send→receipt."""
    sink = Recorder()
    feed = ReceiptFeed(HealthReads(db), sink, interval=1.0)
    await feed.poll()
    _, gb = await _sent(db, "+447400123453")
    _, us = await _sent(db, "+14155550123")
    await _receipt(db, gb, ReceiptStatus.PENDING)
    await _receipt(db, gb, ReceiptStatus.UNDELIVERED, part=1)
    await _receipt(db, gb, ReceiptStatus.DELIVERED, part=2)
    await _receipt(db, us, ReceiptStatus.DELIVERED)
    assert await feed.poll() == 2
    assert await feed.poll() == 0
    assert [(p, c, d) for p, c, d, _ in sink.fed] == [("p", "GB", False), ("p", "US", True)]
    latencies = [latency for *_, latency in sink.fed]
    assert all(latency is not None and 0 <= latency < 60 for latency in latencies)


async def test_receipts_before_the_feed_started_are_not_replayed(db: SqlStore) -> None:
    """The cursor starts at the newest receipt: history is not fed as if it were now."""
    _, old = await _sent(db, "+447400123453")
    await _receipt(db, old, ReceiptStatus.UNDELIVERED)
    sink = Recorder()
    feed = ReceiptFeed(HealthReads(db), sink, interval=1.0)
    await feed.poll()
    assert await feed.poll() == 0
    assert sink.fed == []


async def test_a_receipt_that_overtook_its_send_counts_once_linked(db: SqlStore) -> None:
    """A receipt kept before the send was recorded is fed once the send links it."""
    sink = Recorder()
    feed = ReceiptFeed(HealthReads(db), sink, interval=1.0)
    await feed.poll()
    early = "pm-early"
    await _receipt(db, early, ReceiptStatus.DELIVERED)
    await _receipt(db, "pm-other", ReceiptStatus.PENDING)  # the cursor moves past both
    assert await feed.poll() == 0
    mid = "m-late"
    claim = await db.claim(validate_request({"id": mid, "to": "+33612345678", "body": "hi"}), "p")
    await db.finish_message(
        mid, State.SENT, provider="p", provider_message_id=early,
        closing_attempt=claim.first_attempt,
    )  # fmt: skip
    await ReceiptStore(db).match(mid, "p", early)
    assert await feed.poll() == 1
    assert [(p, c, d) for p, c, d, _ in sink.fed] == [("p", "FR", True)]


async def test_a_send_past_the_receipt_deadline_counts_as_not_delivered(db: SqlStore) -> None:
    """With a deadline, a send left without a final receipt counts as undelivered, once, for a provider known to send receipts."""
    sink = Recorder()
    feed = ReceiptFeed(HealthReads(db), sink, interval=1.0, deadline=0.3)
    await feed.poll()
    _, answered = await _sent(db, "+447400123453")
    await _receipt(db, answered, ReceiptStatus.DELIVERED)
    await _sent(db, "+447400123454")  # never a receipt
    await _sent(db, "+447400123455", provider="silent")  # a provider that never sent one

    async def missed() -> bool:
        await feed.poll()
        return len(sink.fed) >= 2

    await eventually(missed, seconds=10)
    await feed.poll()
    assert [(p, c, d) for p, c, d, _ in sink.fed] == [("p", "GB", True), ("p", "GB", False)]
