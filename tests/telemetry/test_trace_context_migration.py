"""Migration 0009 (messages.trace_context): up, down and up, on SQLite and PostgreSQL."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from smsrelay.models import State, validate_request
from smsrelay.store import SqlStore, upgrade
from smsrelay.store.receipts import ReceiptStore
from tests.test_store_migrations import downgrade, message_columns

TRACEPARENT = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"


@pytest.fixture
async def store(database_url: str) -> AsyncIterator[SqlStore]:
    """A store on the test's own database, not yet migrated."""
    store = SqlStore.from_url(database_url)
    try:
        yield store
    finally:
        await store.close()


async def test_trace_context_migration_goes_up_down_and_up(store: SqlStore) -> None:
    """0009 adds trace_context; its downgrade drops it and keeps the rows; up again works."""
    await upgrade(store.engine)
    assert "trace_context" in await message_columns(store.engine)
    request = validate_request({"id": "m-1", "to": "+14155550123", "body": "hi"})
    claim = await store.claim(request, "alpha", "d-1")
    await store.finish_message(
        "m-1", State.SENT, provider="alpha", provider_message_id="p-1",
        closing_attempt=claim.first_attempt, trace_context=TRACEPARENT,
    )  # fmt: skip
    assert await ReceiptStore(store).trace_contexts("alpha", ["p-1"]) == [("m-1", TRACEPARENT)]
    await downgrade(store.engine, "0008_costs")
    assert "trace_context" not in await message_columns(store.engine)
    await upgrade(store.engine)
    record = await store.get("m-1")
    assert record is not None and record.state is State.SENT
    assert await ReceiptStore(store).trace_contexts("alpha", ["p-1"]) == []


async def test_rows_written_before_0009_have_no_trace_context(store: SqlStore) -> None:
    """A send the previous version recorded is read, and has nothing for a receipt to link to."""
    await upgrade(store.engine, "0008_costs")
    async with store.engine.begin() as conn:
        await conn.exec_driver_sql(
            'INSERT INTO messages (id, "to", country, kind, tags, state, attempts,'
            " possible_duplicate, created_at, updated_at, provider, provider_message_id)"
            " VALUES ('old-1', '+14155550123', 'US', 'transactional', '{}', 'sent', 1, false,"
            " CURRENT_TIMESTAMP, CURRENT_TIMESTAMP, 'alpha', 'p-old')"
        )
    await upgrade(store.engine)
    record = await store.get("old-1")
    assert record is not None and record.provider_message_id == "p-old"
    assert await ReceiptStore(store).trace_contexts("alpha", ["p-old"]) == []
