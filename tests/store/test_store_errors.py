"""Database errors leave the store as StoreRejected (never storable) or StoreUnavailable (try later)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import asyncpg
import pytest
from sqlalchemy import text

import smsrelay.store
from smsrelay.errors import StoreRejected, StoreUnavailable
from smsrelay.models import SendRequest, validate_request
from smsrelay.store import SqlStore
from smsrelay.store.batch import BatchingStore
from tests.conftest import PG_DSN

BODY = "secret-body-5521 for +14155550177"


@pytest.fixture(params=["direct", "batched"])
async def pg_store(pg_url: str, request: pytest.FixtureRequest) -> AsyncIterator[Any]:
    """A migrated PostgreSQL store of the test's own: plain, or with group commit."""
    plain = SqlStore.from_url(pg_url)
    await smsrelay.store.upgrade(plain.engine)
    store = plain if request.param == "direct" else BatchingStore(plain)
    try:
        yield store
    finally:
        await store.close()


def _request(message_id: str = "msg-1", **values: Any) -> SendRequest:
    """A valid request, then ``values`` set without validation (what validation may miss)."""
    valid = validate_request({"id": message_id, "to": "+14155550177", "body": "hello"})
    return valid.model_copy(update=values)


async def test_nul_byte_is_refused_for_good(pg_store: Any) -> None:
    """PostgreSQL cannot store a NUL character: StoreRejected naming the SQLSTATE, not the value."""
    with pytest.raises(StoreRejected) as caught:
        await pg_store.claim(_request(body=BODY + "\x00"), "alpha")
    assert "SQLSTATE 22021" in str(caught.value)
    assert "secret-body" not in str(caught.value)


async def test_constraint_violation_is_refused_for_good(pg_store: Any) -> None:
    """A value a constraint refuses is StoreRejected; a good message in the same batch is stored."""
    async with pg_store.engine.begin() as conn:
        await conn.execute(
            text("ALTER TABLE messages ADD CONSTRAINT no_poison CHECK (body NOT LIKE '%poison%')")
        )
    with pytest.raises(StoreRejected) as caught:
        await pg_store.claim(_request("bad", body="poison " + BODY))
    assert "SQLSTATE 23514" in str(caught.value)
    assert (await pg_store.claim(_request("good"))).new


async def test_unreachable_database_is_unavailable(pg_store: Any, pg_url: str) -> None:
    """With connections refused, the store raises StoreUnavailable: the message is tried later."""
    name = pg_url.rsplit("/", 1)[1]
    admin = await asyncpg.connect(f"{PG_DSN}/test")
    try:
        await admin.execute(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS false')
        await admin.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = $1", name
        )
        with pytest.raises(StoreUnavailable):
            await pg_store.claim(_request(), "alpha")
    finally:
        await admin.execute(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS true')
        await admin.close()


async def test_refused_connection_is_unavailable() -> None:
    """Nothing listening at the database's address is StoreUnavailable, not a bare OSError."""
    store = SqlStore.from_url("postgresql+asyncpg://postgres@127.0.0.1:1/none")
    try:
        with pytest.raises(StoreUnavailable):
            await store.get("msg-1")
    finally:
        await store.close()
