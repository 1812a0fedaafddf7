"""The daily purge: bounded batches on a large table, one purging process at a time."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import pytest
from sqlalchemy import event, func, literal, select, text, update

import smsrelay.store
from smsrelay.models import validate_request
from smsrelay.store import SqlStore
from smsrelay.store.receipts import ReceiptStore
from smsrelay.store.retention import MESSAGES_PURGE_LOCK, PURGE_BATCH, RECEIPTS_PURGE_LOCK
from smsrelay.store.schema import attempts, messages, receipt_refusals

LARGE = 200_000
OLD = datetime.now(UTC) - timedelta(days=40)
CUTOFF = datetime.now(UTC) - timedelta(days=30)

FILL = {
    "sqlite": """
        WITH RECURSIVE g(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM g WHERE n < :count)
        INSERT INTO messages (id, "to", country, kind, tags, state, attempts,
                              possible_duplicate, created_at, updated_at)
        SELECT 'old-' || n, '+14155550123', 'US', 'transactional', '{}', 'sent', 1, 0,
               CURRENT_TIMESTAMP, CURRENT_TIMESTAMP FROM g""",
    "postgresql": """
        INSERT INTO messages (id, "to", country, kind, tags, state, attempts,
                              possible_duplicate, created_at, updated_at)
        SELECT 'old-' || n, '+14155550123', 'US', 'transactional', '{}', 'sent', 1, false,
               now(), now() FROM generate_series(1, :count) AS n""",
}


@pytest.fixture
async def store(database_url: str) -> AsyncIterator[SqlStore]:
    """A migrated store on the test's own database."""
    store = SqlStore.from_url(database_url)
    await smsrelay.store.upgrade(store.engine)
    try:
        yield store
    finally:
        await store.close()


async def fill(store: SqlStore, count: int) -> None:
    """``count`` messages last updated 40 days ago, one attempt each, and two recent ones."""
    async with store.engine.begin() as conn:
        await conn.execute(text(FILL[store.engine.dialect.name]), {"count": count})
        await conn.execute(update(messages).values(created_at=OLD, updated_at=OLD))
        await conn.execute(
            attempts.insert().from_select(
                ["message_id", "number", "provider", "outcome", "started_at"],
                select(
                    messages.c.id, literal(1), literal("sim"), literal("sent"), messages.c.created_at
                ),
            )
        )
    for mid in ("recent-1", "recent-2"):
        await store.claim(validate_request({"id": mid, "to": "+14155550123", "body": "hi"}))


async def rows(store: SqlStore, table: Any) -> int:
    """Rows in ``table``."""
    async with store.engine.connect() as conn:
        return int((await conn.execute(select(func.count()).select_from(table))).scalar_one())


class DeleteLog:
    """Every DELETE on ``messages`` the engine runs: rows deleted and seconds taken."""

    def __init__(self, store: SqlStore) -> None:
        self.deletes: list[tuple[int, float]] = []
        self._started = 0.0
        engine = store.engine.sync_engine
        event.listen(engine, "before_cursor_execute", self._before)
        event.listen(engine, "after_cursor_execute", self._after)

    def _before(self, *_: Any) -> None:
        self._started = time.perf_counter()

    def _after(self, _conn: Any, cursor: Any, statement: str, *_: Any) -> None:
        if statement.lstrip().upper().startswith("DELETE FROM MESSAGES"):
            self.deletes.append((cursor.rowcount, time.perf_counter() - self._started))


async def test_purge_of_a_large_table_runs_in_bounded_batches(store: SqlStore) -> None:
    """200,000 old messages are purged (attempts too) in deletes of at most PURGE_BATCH rows; recent ones stay."""
    await fill(store, LARGE)
    log = DeleteLog(store)
    began = time.perf_counter()
    purged = await store.purge(CUTOFF)
    took = time.perf_counter() - began
    assert purged == LARGE
    assert max(n for n, _ in log.deletes) == PURGE_BATCH
    assert len(log.deletes) == LARGE // PURGE_BATCH + 1  # the last finds nothing left
    assert await rows(store, messages) == 2 and await rows(store, attempts) == 0
    longest = max(s for _, s in log.deletes)
    print(f"{store.engine.dialect.name}: {took:.1f} s, longest batch {longest * 1000:.0f} ms")


async def hold_lock(pg_url: str, key: int) -> asyncpg.Connection:
    """Another process's session holding the advisory lock ``key``."""
    other = await asyncpg.connect(pg_url.replace("postgresql+asyncpg", "postgresql"))
    await other.execute("SELECT pg_advisory_lock($1)", key)
    return other


async def test_purge_skips_while_another_process_purges(pg_url: str) -> None:
    """While another session holds the purge lock, purge deletes nothing and returns 0 at once."""
    store = SqlStore.from_url(pg_url)
    try:
        await smsrelay.store.upgrade(store.engine)
        await fill(store, 10)
        other = await hold_lock(pg_url, MESSAGES_PURGE_LOCK)
        try:
            assert await asyncio.wait_for(store.purge(CUTOFF), timeout=10) == 0
            assert await rows(store, messages) == 12
        finally:
            await other.close()
        assert await store.purge(CUTOFF) == 10
    finally:
        await store.close()


async def test_two_concurrent_purgers_do_not_both_run(pg_url: str) -> None:
    """Two processes (two engines) purging 200,000 rows at once: one does it all, the other skips."""
    first, second = SqlStore.from_url(pg_url), SqlStore.from_url(pg_url)
    try:
        await smsrelay.store.upgrade(first.engine)
        await fill(first, LARGE)
        results = await asyncio.gather(first.purge(CUTOFF), second.purge(CUTOFF))
        assert sorted(results) == [0, LARGE]
        assert await rows(first, messages) == 2
    finally:
        await first.close()
        await second.close()


async def test_receipt_purge_skips_while_another_process_purges(pg_url: str) -> None:
    """The receipts' purge takes its own lock: held elsewhere, nothing is deleted."""
    store = SqlStore.from_url(pg_url)
    try:
        await smsrelay.store.upgrade(store.engine)
        async with store.engine.begin() as conn:
            await conn.execute(receipt_refusals.insert().values(provider="p", reason="r", at=OLD))
        other = await hold_lock(pg_url, RECEIPTS_PURGE_LOCK)
        try:
            assert await ReceiptStore(store).purge(CUTOFF) == 0
        finally:
            await other.close()
        assert await ReceiptStore(store).purge(CUTOFF) == 1
    finally:
        await store.close()
