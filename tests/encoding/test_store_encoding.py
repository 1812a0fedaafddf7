"""Encoding as written and as sent, kept by the store; migration 0003_encoding both ways."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import pytest
from alembic import command
from sqlalchemy import Table, insert, inspect, select
from sqlalchemy import column as sql_column
from sqlalchemy import table as sql_table
from sqlalchemy.ext.asyncio import AsyncEngine
from sqlalchemy.sql.expression import TableClause

import smsrelay.store
from smsrelay.encoding import encode
from smsrelay.models import validate_request
from smsrelay.store import SqlStore
from smsrelay.store.batch import BatchingStore
from smsrelay.store.migrate import alembic_config
from smsrelay.store.schema import attempts, messages

NEW_COLUMNS = {"messages": {"original_encoding", "original_parts"}, "attempts": {"sent_encoding", "sent_parts"}}


@pytest.fixture(params=["direct", "batched"])
async def store(database_url: str, request: pytest.FixtureRequest) -> AsyncIterator[Any]:
    """A migrated store on the test's own database: plain, or with group commit."""
    plain = SqlStore.from_url(database_url)
    await smsrelay.store.upgrade(plain.engine)
    store = plain if request.param == "direct" else BatchingStore(plain)
    try:
        yield store
    finally:
        await store.close()


async def _claim(store: Any, body: str) -> int:
    request = validate_request({"id": "m-1", "to": "+14155550123", "body": body})
    await store.claim(request)
    key: int = await store.start_attempt("m-1", 1, "simulator")
    return key


async def test_original_and_sent_encoding_are_kept(store: Any) -> None:
    """A 150-char body with a curly quote reads back as ucs2/3 parts written, gsm7/1 part sent."""
    key = await _claim(store, "a" * 149 + "’")
    await store.record_encoding("m-1", key, encode("a" * 149 + "’", smart=True))
    record = await store.get("m-1")
    assert (record.original_encoding, record.original_parts) == ("ucs2", 3)
    assert (record.attempts[0].sent_encoding, record.attempts[0].sent_parts) == ("gsm7", 1)


async def test_unrecorded_encoding_reads_as_none(store: Any) -> None:
    """A message whose encoding was never recorded has None for it, on the message and the attempt."""
    await _claim(store, "hello")
    record = await store.get("m-1")
    assert (record.original_encoding, record.original_parts) == (None, None)
    assert (record.attempts[0].sent_encoding, record.attempts[0].sent_parts) == (None, None)


async def _columns(engine: AsyncEngine) -> dict[str, set[str]]:
    async with engine.connect() as conn:
        return await conn.run_sync(
            lambda sync: {t: {c["name"] for c in inspect(sync).get_columns(t)} for t in NEW_COLUMNS}
        )


async def _migrate(engine: AsyncEngine, direction: str, revision: str) -> None:
    step = command.upgrade if direction == "up" else command.downgrade
    async with engine.begin() as conn:
        await conn.run_sync(lambda sync: step(alembic_config(sync), revision))


_OLD_MESSAGE = {
    "id": "old-1", "to": "+14155550123", "country": "US", "kind": "transactional",
    "tags": {}, "state": "sent", "attempts": 1, "possible_duplicate": False,
}
_OLD_ATTEMPT = {"message_id": "old-1", "number": 1, "provider": "simulator", "outcome": "sent"}


def _as_of_0002(table: Table, row: dict[str, Any]) -> TableClause:
    """``table`` with only the columns ``row`` names, as an older schema had it."""
    return sql_table(table.name, *(sql_column(name, table.c[name].type) for name in row))


async def test_migration_upgrades_downgrades_and_upgrades_again(database_url: str) -> None:
    """0003_encoding adds its four columns, removes them on downgrade without losing rows, adds them again."""
    store = SqlStore.from_url(database_url)
    try:
        await _migrate(store.engine, "up", "0002")
        # Written by the previous version: a message and its attempt, no encoding columns.
        now = datetime.now(UTC)
        async with store.engine.begin() as conn:
            old_message = {**_OLD_MESSAGE, "created_at": now, "updated_at": now}
            old_attempt = {**_OLD_ATTEMPT, "started_at": now}
            # Only the columns 0002 had: today's table would add its newer defaults.
            await conn.execute(insert(_as_of_0002(messages, old_message)).values(old_message))
            await conn.execute(insert(_as_of_0002(attempts, old_attempt)).values(old_attempt))
        await _migrate(store.engine, "up", "head")
        assert all(NEW_COLUMNS[t] <= cols for t, cols in (await _columns(store.engine)).items())
        old = await store.get("old-1")
        assert old is not None and old.original_encoding is None
        assert old.attempts[0].sent_parts is None

        await _migrate(store.engine, "down", "0002")
        assert all(not (NEW_COLUMNS[t] & cols) for t, cols in (await _columns(store.engine)).items())
        async with store.engine.connect() as conn:
            kept = (await conn.execute(select(attempts.c.message_id))).scalars().all()
        assert kept == ["old-1"]

        await _migrate(store.engine, "up", "head")
        assert all(NEW_COLUMNS[t] <= cols for t, cols in (await _columns(store.engine)).items())
    finally:
        await store.close()
