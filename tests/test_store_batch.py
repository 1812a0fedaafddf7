"""Group commit: concurrent hot-path writes share transactions, and fail one by one."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime

import pytest
from sqlalchemy import event, insert

import smsrelay.store
from smsrelay.models import SendRequest, State, validate_request
from smsrelay.store import SqlStore
from smsrelay.store.batch import BatchingStore
from smsrelay.store.schema import receipts


@pytest.fixture
async def batched(database_url: str) -> AsyncIterator[BatchingStore]:
    """A migrated batching store on the test's own database."""
    plain = SqlStore.from_url(database_url)
    await smsrelay.store.upgrade(plain.engine)
    store = BatchingStore(plain)
    try:
        yield store
    finally:
        await store.close()


def _request(i: int) -> SendRequest:
    return validate_request({"id": f"b-{i}", "to": "+14155550123", "body": "hi"})


async def _journey(store: BatchingStore, i: int) -> None:
    claim = await store.claim(_request(i))
    assert claim.new
    key = await store.start_attempt(f"b-{i}", 1, "sim")
    await store.finish_message(
        f"b-{i}", State.SENT, provider="sim", provider_message_id=f"p-{i}", closing_attempt=key
    )


async def test_concurrent_sends_share_commits(batched: BatchingStore) -> None:
    """300 concurrent claim → attempt → sent journeys commit in far fewer than 900 transactions."""
    commits = 0

    def count(_: object) -> None:
        nonlocal commits
        commits += 1

    event.listen(batched.engine.sync_engine, "commit", count)
    await asyncio.gather(*(_journey(batched, i) for i in range(300)))
    record = await batched.get("b-299")
    assert record is not None and record.state is State.SENT
    assert [(a.outcome, a.provider_message_id) for a in record.attempts] == [("sent", "p-299")]
    assert commits < 100, commits


async def test_one_failing_write_does_not_fail_its_batch(batched: BatchingStore) -> None:
    """An attempt for an unknown message fails alone; the writes batched with it succeed."""
    await asyncio.gather(*(batched.claim(_request(i)) for i in range(5)))
    results = await asyncio.gather(
        *(batched.start_attempt(f"b-{i}", 1, "sim") for i in range(5)),
        batched.start_attempt("no-such-message", 1, "sim"),
        return_exceptions=True,
    )
    assert all(isinstance(r, int) for r in results[:5])
    assert isinstance(results[5], Exception)


async def test_duplicate_claim_in_one_batch_reports_the_known_message(
    batched: BatchingStore,
) -> None:
    """A second claim of an id, batched after the first committed, is not new."""
    first = await batched.claim(_request(1))
    again, other = await asyncio.gather(batched.claim(_request(1)), batched.claim(_request(2)))
    assert first.new and not again.new and other.new
    assert again.state is State.ACCEPTED


async def test_recording_a_send_reports_receipts_that_overtook_it(batched: BatchingStore) -> None:
    """finish_message says True only for sends whose provider id already has a kept receipt."""
    async with batched.engine.begin() as conn:
        await conn.execute(
            insert(receipts).values(
                provider="sim",
                provider_message_id="p-1",
                status="delivered",
                provider_status="DELIVRD",
                received_at=datetime.now(UTC),
            )
        )
    for i in (1, 2):
        await batched.claim(_request(i))
    keys = [await batched.start_attempt(f"b-{i}", 1, "sim") for i in (1, 2)]
    waiting = await asyncio.gather(
        *(
            batched.finish_message(
                f"b-{i}",
                State.SENT,
                provider="sim",
                provider_message_id=f"p-{i}",
                closing_attempt=k,
            )
            for i, k in zip((1, 2), keys, strict=True)
        )
    )
    assert waiting == [True, False]
