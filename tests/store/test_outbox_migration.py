"""Migration 0003 (event outbox): up, down and up again, on SQLite and PostgreSQL."""

from __future__ import annotations

from alembic import command
from sqlalchemy import inspect
from sqlalchemy.ext.asyncio import AsyncEngine

from smsrelay.store import SqlStore, upgrade
from smsrelay.store.migrate import alembic_config

OUTBOX = "0006_receipts_outbox"


async def downgrade(engine: AsyncEngine, revision: str) -> None:
    """Take the schema down to ``revision``."""
    async with engine.begin() as conn:
        await conn.run_sync(lambda sync: command.downgrade(alembic_config(sync), revision))


async def tables(engine: AsyncEngine) -> set[str]:
    """The tables in the database."""
    async with engine.connect() as conn:
        return set(await conn.run_sync(lambda sync: inspect(sync).get_table_names()))


async def test_outbox_migration_goes_up_down_and_up(database_url: str) -> None:
    """0006 adds event_outbox, its downgrade drops only that, and it applies again."""
    store = SqlStore.from_url(database_url)
    try:
        await upgrade(store.engine, OUTBOX)
        assert "event_outbox" in await tables(store.engine)
        await downgrade(store.engine, "0005_request_digest")
        found = await tables(store.engine)
        assert "event_outbox" not in found and {"receipts", "receipt_digests"} <= found
        await upgrade(store.engine, OUTBOX)
        assert "event_outbox" in await tables(store.engine)
    finally:
        await store.close()
