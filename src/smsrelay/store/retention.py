"""Retention: old rows are deleted in bounded batches, by one process at a time.

Every worker purges at start and daily, and every API process purges receipts: without
care, N processes would each run one long transaction over the same backlog. Each
batch here is its own short transaction (SQLite's single writer and PostgreSQL's locks
are held for milliseconds, not for the whole backlog), and on PostgreSQL a session
advisory lock lets one process purge while the others skip their turn. SQLite is
written by one process by design (the embedded default), so it needs no lock.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import Any

from sqlalchemy import Column, ColumnElement, Table, delete, func, select
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

# Rows per transaction: tens of milliseconds of deleting (cascades included), so sends
# barely notice a purge running.
PURGE_BATCH = 1000

# Advisory lock keys (one 64-bit namespace per database, shared with any other
# application): b"smsrelay" read as an integer, then the next one.
MESSAGES_PURGE_LOCK = int.from_bytes(b"smsrelay", "big")
RECEIPTS_PURGE_LOCK = MESSAGES_PURGE_LOCK + 1

Transaction = Callable[[], AbstractAsyncContextManager[AsyncConnection]]


@asynccontextmanager
async def purge_lock(engine: AsyncEngine, key: int) -> AsyncIterator[bool]:
    """Yield whether this process may purge now (False at once if another one is)."""
    if engine.dialect.name != "postgresql":
        yield True
        return
    async with engine.connect() as conn:
        # Session level: held across the purge's many transactions, released on exit
        # or when the connection dies with the process.
        held = bool(await conn.scalar(select(func.pg_try_advisory_lock(key))))
        await conn.commit()
        try:
            yield held
        finally:
            if held:
                await conn.scalar(select(func.pg_advisory_unlock(key)))
                await conn.commit()


async def delete_in_batches(
    transaction: Transaction,
    table: Table,
    key: Column[Any],
    where: ColumnElement[bool],
    batch_size: int = PURGE_BATCH,
) -> int:
    """Delete ``table``'s rows matching ``where``, at most ``batch_size`` per transaction."""
    total = 0
    while True:
        batch = select(key).where(where).limit(batch_size)
        async with transaction() as conn:
            deleted = int((await conn.execute(delete(table).where(key.in_(batch)))).rowcount)
        total += deleted
        if deleted < batch_size:
            return total
