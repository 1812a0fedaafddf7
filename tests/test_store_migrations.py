"""Migration 0003 (request digests): up, down and up again, and the new code reads old rows."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from alembic import command
from sqlalchemy import inspect
from sqlalchemy.ext.asyncio import AsyncEngine

from smsrelay.models import validate_request
from smsrelay.store import SqlStore, upgrade
from smsrelay.store.migrate import alembic_config


@pytest.fixture
async def store(database_url: str) -> AsyncIterator[SqlStore]:
    """A store on the test's own database, not yet migrated."""
    store = SqlStore.from_url(database_url)
    try:
        yield store
    finally:
        await store.close()


async def downgrade(engine: AsyncEngine, revision: str) -> None:
    """Take the schema down to ``revision``."""
    async with engine.begin() as conn:
        await conn.run_sync(lambda sync: command.downgrade(alembic_config(sync), revision))


async def message_columns(engine: AsyncEngine) -> set[str]:
    """The columns of ``messages`` as the database has them."""
    async with engine.connect() as conn:
        return await conn.run_sync(
            lambda sync: {c["name"] for c in inspect(sync).get_columns("messages")}
        )


async def test_request_digest_migration_goes_up_down_and_up(store: SqlStore) -> None:
    """0005 adds request_digest and claimed; its downgrade removes them and keeps the rows."""
    await upgrade(store.engine)
    assert {"request_digest", "claimed"} <= await message_columns(store.engine)
    request = validate_request({"id": "m-1", "to": "+14155550123", "body": "hi"})
    await store.claim(request, "alpha", "d-1")
    await downgrade(store.engine, "0004_prices")
    assert not {"request_digest", "claimed"} & await message_columns(store.engine)
    await upgrade(store.engine)
    record = await store.get("m-1")
    assert record is not None and [a.number for a in record.attempts] == [1]


async def test_rows_written_before_0005_are_claimed_and_duplicates(store: SqlStore) -> None:
    """A message the previous version recorded is a worker's claim with an unknown digest."""
    await upgrade(store.engine, "0004_prices")
    async with store.engine.begin() as conn:
        await conn.exec_driver_sql(
            "INSERT INTO messages (id, \"to\", country, kind, tags, state, attempts,"
            " possible_duplicate, created_at, updated_at) VALUES ('old-1', '+14155550123',"
            " 'US', 'transactional', '{}', 'sent', 1, false, CURRENT_TIMESTAMP,"
            " CURRENT_TIMESTAMP)"
        )
    await upgrade(store.engine)
    request = validate_request({"id": "old-1", "to": "+14155550123", "body": "other text"})
    claim = await store.claim(request, "alpha", request.digest())
    assert not claim.new and not claim.conflict and claim.state.value == "sent"
