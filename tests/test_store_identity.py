"""The store keeps what defined each request (its digest) and the API's record of an accepted one."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest
from sqlalchemy import select

import smsrelay.store
from smsrelay.models import SendRequest, State, validate_request
from smsrelay.store import Acceptance, SqlStore
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


def sql(store: Any) -> SqlStore:
    """The SQL store under ``store`` (the API's, which records accepted requests)."""
    return store.inner if isinstance(store, BatchingStore) else store


def new_request(message_id: str = "msg-1", **changes: Any) -> SendRequest:
    """A valid request with ``changes``."""
    data = {"id": message_id, "to": "+14155550123", "body": "Your parcel is on its way"}
    return validate_request({**data, **changes})


async def test_same_id_with_another_digest_is_claimed_as_a_conflict(store: Any) -> None:
    """The second claim of an id with another digest says conflict, and starts no attempt."""
    first = await store.claim(new_request(), "alpha", "digest-a")
    again = await store.claim(new_request(), "alpha", "digest-b")
    assert first.new and not first.conflict
    assert again.conflict and not again.new and again.first_attempt is None
    record = await store.get("msg-1")
    assert [a.number for a in record.attempts] == [1]


async def test_same_id_with_the_same_digest_is_a_plain_duplicate(store: Any) -> None:
    """The same digest again is the duplicate it always was: not new, no conflict."""
    await store.claim(new_request(), None, "digest-a")
    again = await store.claim(new_request(), None, "digest-a")
    assert not again.new and not again.conflict


async def test_unknown_digest_on_either_side_is_no_conflict(store: Any) -> None:
    """A row without a digest (older version) or a claim without one is never a conflict."""
    await store.claim(new_request("old"), None, None)
    assert not (await store.claim(new_request("old"), None, "digest-a")).conflict
    await store.claim(new_request("new"), None, "digest-a")
    assert not (await store.claim(new_request("new"), None, None)).conflict


async def test_accepted_message_is_visible_then_claimed_as_new_once(store: Any) -> None:
    """The API's record answers get() at once; the first claim takes it over as new, the next is a duplicate."""
    request = new_request("api-1")
    assert await sql(store).accept(request, "digest-a") is Acceptance.NEW
    record = await store.get("api-1")
    assert record is not None and record.state is State.ACCEPTED and record.attempts == []

    claim = await store.claim(request, "alpha", "digest-a")
    assert claim.new and claim.attempts == 1 and claim.first_attempt is not None
    again = await store.claim(request, "alpha", "digest-a")
    assert not again.new and again.open_attempt
    record = await store.get("api-1")
    assert [(a.number, a.outcome) for a in record.attempts] == [(1, "started")]


async def test_racing_claims_of_an_accepted_message_make_one_new(store: Any) -> None:
    """Two workers claiming the API's record at once: exactly one of them gets it."""
    request = new_request("api-2")
    await sql(store).accept(request, "digest-a")
    claims = await asyncio.gather(*(store.claim(request, "alpha", "digest-a") for _ in range(4)))
    assert sorted(c.new for c in claims) == [False, False, False, True]


async def test_accepted_message_with_another_digest_is_a_conflict_for_the_worker(
    store: Any,
) -> None:
    """A claim with another digest does not take the API's record over."""
    await sql(store).accept(new_request("api-3"), "digest-a")
    assert (await store.claim(new_request("api-3"), "alpha", "digest-b")).conflict
    assert (await store.claim(new_request("api-3"), "alpha", "digest-a")).new


async def test_accept_reports_what_was_known_of_the_id(store: Any) -> None:
    """new, then queued (no worker yet), known once claimed; another digest is a conflict."""
    request = new_request("api-4")
    api = sql(store)
    assert await api.accept(request, "digest-a") is Acceptance.NEW
    assert await api.accept(request, "digest-a") is Acceptance.QUEUED
    assert await api.accept(request, "digest-b") is Acceptance.CONFLICT
    await store.claim(request, None, "digest-a")
    assert await api.accept(request, "digest-a") is Acceptance.KNOWN


async def test_withdraw_forgets_only_an_unclaimed_message(store: Any) -> None:
    """A publish that failed takes the record back; a message a worker holds is never removed."""
    api = sql(store)
    await api.accept(new_request("gone"), "d")
    await api.withdraw("gone")
    assert await store.get("gone") is None
    await api.accept(new_request("kept"), "d")
    await store.claim(new_request("kept"), None, "d")
    await api.withdraw("kept")
    assert await store.get("kept") is not None


async def test_worker_claim_records_the_digest(store: Any) -> None:
    """The digest is written with the claim, so a later reuse of the id can be recognised."""
    await store.claim(new_request("w-1"), None, "digest-w")
    async with sql(store).engine.connect() as conn:
        row = (
            await conn.execute(
                select(messages.c.request_digest, messages.c.claimed).where(
                    messages.c.id == "w-1"
                )
            )
        ).one()
    assert (row.request_digest, bool(row.claimed)) == ("digest-w", True)
