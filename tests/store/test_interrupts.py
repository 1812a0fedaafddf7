"""Interrupted attempts: the possible-duplicate flag survives any number of crashes."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest
from sqlalchemy import update

import smsrelay.store
from smsrelay.models import validate_request
from smsrelay.store import SqlStore
from smsrelay.store.batch import BatchingStore
from smsrelay.store.schema import messages


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


def _request() -> Any:
    return validate_request({"id": "msg-1", "to": "+14155550123", "body": "hello"})


async def test_interrupt_then_crash_leaves_the_next_claim_flagged(store: Any) -> None:
    """Claim → open attempt → crash → interrupt → crash again: the third claim is still flagged."""
    await store.claim(_request(), "alpha")  # worker 1 dies inside attempt 1
    second = await store.claim(_request())
    assert second.open_attempt
    await store.interrupt_open_attempts("msg-1")  # worker 2 dies right after this commit

    third = await store.claim(_request())

    assert not third.open_attempt
    assert third.possible_duplicate
    record = await store.get("msg-1")
    assert record is not None and record.possible_duplicate


async def test_interrupted_attempt_alone_is_evidence_of_a_possible_duplicate(store: Any) -> None:
    """An interrupted attempt on an unflagged message (as older versions wrote it) still flags the claim."""
    await store.claim(_request(), "alpha")
    await store.interrupt_open_attempts("msg-1")
    engine = store.engine
    async with engine.begin() as conn:
        await conn.execute(update(messages).values(possible_duplicate=False))

    claim = await store.claim(_request())

    assert claim.possible_duplicate
    assert not claim.open_attempt
