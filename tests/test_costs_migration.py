"""Migration 0008 (attempt costs): up, down and up again; rows from before read back."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from sqlalchemy import inspect

from smsrelay.models import validate_request
from smsrelay.store import SqlStore, upgrade
from tests.test_store_migrations import downgrade

COSTS = {"estimated_cost", "currency", "actual_cost", "actual_currency"}


@pytest.fixture
async def store(database_url: str) -> AsyncIterator[SqlStore]:
    """A store on the test's own database, not yet migrated."""
    store = SqlStore.from_url(database_url)
    try:
        yield store
    finally:
        await store.close()


async def attempt_columns(store: SqlStore) -> set[str]:
    """The columns of ``attempts`` as the database has them."""
    async with store.engine.connect() as conn:
        return await conn.run_sync(
            lambda sync: {c["name"] for c in inspect(sync).get_columns("attempts")}
        )


async def test_costs_migration_goes_up_down_and_up(store: SqlStore) -> None:
    """0008 adds the cost columns; its downgrade drops them and keeps attempts."""
    await upgrade(store.engine, "0007_resends")
    request = validate_request({"id": "m-1", "to": "+14155550123", "body": "hi"})
    await store.claim(request, "alpha", "d-1")  # written by the previous version's schema
    await upgrade(store.engine)
    assert await attempt_columns(store) >= COSTS
    record = await store.get("m-1")
    assert record is not None and record.attempts[0].estimated_cost is None
    await downgrade(store.engine, "0007_resends")
    assert not COSTS & await attempt_columns(store)
    await upgrade(store.engine)
    record = await store.get("m-1")
    assert record is not None and [a.number for a in record.attempts] == [1]
