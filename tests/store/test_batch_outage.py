"""A database outage never drops a provider's answer (issue 7, item 7).

The group-commit store keeps the writes that record what a provider did (an attempt's
end, the message's outcome) while PostgreSQL refuses connections, and writes them once
it is back; writes made before a send fail at once.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import asyncpg
import pytest

import smsrelay.store
from smsrelay.models import State, validate_request
from smsrelay.store import SqlStore
from smsrelay.store.batch import BatchingStore
from tests.conftest import PG_DSN, eventually


async def allow_connections(url: str, allowed: bool) -> None:
    """Open or close the test's own database (and drop its sessions when closing)."""
    name = url.rsplit("/", 1)[1]
    admin = await asyncpg.connect(f"{PG_DSN}/test")
    try:
        await admin.execute(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS {str(allowed).lower()}')
        if not allowed:
            await admin.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = $1", name
            )
    finally:
        await admin.close()


@pytest.fixture
async def batched(pg_url: str) -> AsyncIterator[BatchingStore]:
    """A migrated batching store on the test's own PostgreSQL database."""
    plain = SqlStore.from_url(pg_url)
    await smsrelay.store.upgrade(plain.engine)
    store = BatchingStore(plain)
    try:
        yield store
    finally:
        await allow_connections(pg_url, True)
        await store.close()


def _request(mid: str) -> object:
    return validate_request({"id": mid, "to": "+14155550123", "body": "hi"})


async def test_outcome_written_during_an_outage_is_kept_until_the_store_is_back(
    batched: BatchingStore, pg_url: str
) -> None:
    """A sent outcome written while PostgreSQL refuses connections waits and is recorded once it is back; a claim fails at once."""
    await batched.claim(_request("kept"), "sim")  # type: ignore[arg-type]
    await allow_connections(pg_url, False)
    finish = asyncio.create_task(
        batched.finish_message("kept", State.SENT, provider="sim", provider_message_id="p-1")
    )
    with pytest.raises(Exception):  # noqa: B017 - whatever the driver says, it is not kept
        await batched.claim(_request("refused"), "sim")  # type: ignore[arg-type]
    await eventually(lambda: finish.done() or batched.kept_writes == 1, seconds=30)
    assert not finish.done(), f"the outcome was dropped: {finish.exception()!r}"
    await allow_connections(pg_url, True)
    await asyncio.wait_for(finish, timeout=60)
    record = await batched.get("kept")
    assert record is not None and record.state is State.SENT
    assert record.provider_message_id == "p-1"
