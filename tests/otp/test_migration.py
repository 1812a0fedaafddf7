"""Migration 0010 (verifications, conversions): up, down and up again on SQLite and PostgreSQL."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import inspect

from smsrelay.otp import verify
from smsrelay.store import SqlStore, upgrade
from smsrelay.store.verifications import NewCode, VerificationStore
from tests.test_store_migrations import downgrade


@pytest.fixture
async def store(database_url: str) -> AsyncIterator[SqlStore]:
    """A store on the test's own database, not yet migrated."""
    store = SqlStore.from_url(database_url)
    try:
        yield store
    finally:
        await store.close()


async def _tables(store: SqlStore) -> set[str]:
    async with store.engine.connect() as conn:
        return set(await conn.run_sync(lambda sync: inspect(sync).get_table_names()))


async def test_verifications_migration_goes_up_down_and_up(store: SqlStore) -> None:
    """0010 adds verifications and conversions; down drops them and keeps messages; up again works."""
    await upgrade(store.engine)
    assert {"verifications", "conversions"} <= await _tables(store)
    now = datetime.now(UTC)
    salt = verify.new_salt()
    code = NewCode(verify.hash_code(b"k", salt, "123456"), salt, "vf-1.1")
    verifications = VerificationStore(store)
    await verifications.create(
        "vf-1",
        "+14155550123",
        "US",
        code,
        max_attempts=5,
        now=now,
        expires_at=now + timedelta(minutes=5),
    )
    checked = await verifications.check("vf-1", b"k", "123456", now)
    assert checked is not None and checked.result.value == "approved"
    await downgrade(store.engine, "0009_trace_context")
    tables = await _tables(store)
    assert not {"verifications", "conversions"} & tables and "messages" in tables
    await upgrade(store.engine)
    assert await VerificationStore(store).get("vf-1") is None
