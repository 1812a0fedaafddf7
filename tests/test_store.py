"""The SQL store, on SQLite and on a fresh PostgreSQL database for every test."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
from sqlalchemy import func, select, update

import smsrelay.store
from smsrelay.models import EventError, SendRequest, State, validate_request
from smsrelay.store import SqlStore
from smsrelay.store.batch import BatchingStore
from smsrelay.store.schema import attempts, messages, rejections


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


def new_request(message_id: str = "msg-1", **changes: Any) -> SendRequest:
    """A valid request with ``changes``."""
    data = {"id": message_id, "to": "+14155550123", "body": "Your parcel is on its way"}
    return validate_request({**data, **changes})


async def test_first_claim_of_an_id_is_new(store: SqlStore) -> None:
    """An id never seen is inserted as accepted with no attempts."""
    claim = await store.claim(new_request())
    assert claim == smsrelay.store.Claim(
        new=True, state=State.ACCEPTED, attempts=0, open_attempt=False
    )
    record = await store.get("msg-1")
    assert record is not None
    assert record.state is State.ACCEPTED
    assert record.to == "+14155550123"
    assert record.country == "US"
    assert record.kind == "transactional"


async def test_second_claim_of_an_id_is_a_duplicate(store: SqlStore) -> None:
    """Claiming an id again reports what the store knows instead of inserting."""
    await store.claim(new_request())
    claim = await store.claim(new_request(body="a different body"))
    assert not claim.new
    assert claim.state is State.ACCEPTED
    assert claim.attempts == 0
    assert not claim.open_attempt


async def test_duplicate_claim_reports_the_final_state(store: SqlStore) -> None:
    """A duplicate of a sent message says it was sent."""
    await store.claim(new_request())
    await store.finish_message("msg-1", State.SENT, provider="sim")
    assert (await store.claim(new_request())).state is State.SENT


async def test_started_attempt_without_finish_is_an_open_attempt(store: SqlStore) -> None:
    """A worker that died after start_attempt leaves an open attempt the next claim sees."""
    await store.claim(new_request())
    await store.start_attempt("msg-1", 1, "sim")
    claim = await store.claim(new_request())
    assert claim.open_attempt
    assert claim.attempts == 1


async def test_finished_attempt_is_not_open(store: SqlStore) -> None:
    """Once an attempt is finished, a later claim sees no open attempt."""
    await store.claim(new_request())
    key = await store.start_attempt("msg-1", 1, "sim")
    await store.finish_attempt(
        key, "transient", error=EventError(code="x", message="m", retryable=True)
    )
    assert not (await store.claim(new_request())).open_attempt


async def test_interrupt_open_attempts_closes_them_as_interrupted(store: SqlStore) -> None:
    """Open attempts become ``interrupted`` with an end time; finished ones are untouched."""
    await store.claim(new_request())
    done = await store.start_attempt("msg-1", 1, "a")
    await store.finish_attempt(done, "transient")
    await store.start_attempt("msg-1", 2, "b")
    await store.interrupt_open_attempts("msg-1")
    assert not (await store.claim(new_request())).open_attempt
    record = await store.get("msg-1")
    assert record is not None
    assert [a.outcome for a in record.attempts] == ["transient", "interrupted"]
    assert record.attempts[1].finished_at is not None


async def test_interrupt_touches_only_the_given_message(store: SqlStore) -> None:
    """Another message's open attempt stays open."""
    await store.claim(new_request("msg-1"))
    await store.claim(new_request("msg-2"))
    await store.start_attempt("msg-1", 1, "sim")
    await store.start_attempt("msg-2", 1, "sim")
    await store.interrupt_open_attempts("msg-1")
    assert (await store.claim(new_request("msg-2"))).open_attempt


async def test_get_returns_attempts_in_order_with_timings_and_outcome(store: SqlStore) -> None:
    """get gives the message's outcome and every attempt, oldest first, with aware times."""
    await store.claim(new_request(tags={"campaign": "spring"}))
    first = await store.start_attempt("msg-1", 1, "alpha")
    await store.finish_attempt(
        first, "transient", error=EventError(code="alpha:503", message="down", retryable=True)
    )
    second = await store.start_attempt("msg-1", 2, "beta")
    await store.finish_attempt(second, "sent", provider_message_id="pm-42")
    await store.finish_message(
        "msg-1", State.SENT, provider="beta", provider_message_id="pm-42", segments=2
    )

    record = await store.get("msg-1")
    assert record is not None
    assert (record.state, record.provider, record.provider_message_id, record.segments) == (
        State.SENT,
        "beta",
        "pm-42",
        2,
    )
    assert record.tags == {"campaign": "spring"}
    assert record.error_code is None
    assert [(a.number, a.provider, a.outcome) for a in record.attempts] == [
        (1, "alpha", "transient"),
        (2, "beta", "sent"),
    ]
    assert (record.attempts[0].error_code, record.attempts[0].error_message) == (
        "alpha:503",
        "down",
    )
    assert record.attempts[1].provider_message_id == "pm-42"
    for attempt in record.attempts:
        assert attempt.finished_at is not None
        assert attempt.started_at <= attempt.finished_at
    assert record.attempts[0].finished_at <= record.attempts[1].started_at  # type: ignore[operator]


async def test_datetimes_come_back_timezone_aware_utc(store: SqlStore) -> None:
    """Every datetime the store returns carries UTC, on SQLite as on PostgreSQL."""
    before = datetime.now(UTC)
    await store.claim(new_request())
    key = await store.start_attempt("msg-1", 1, "sim")
    await store.finish_attempt(key, "sent", provider_message_id="pm")
    await store.finish_message("msg-1", State.SENT, provider="sim")
    after = datetime.now(UTC)

    record = await store.get("msg-1")
    assert record is not None
    stamps = [record.created_at, record.updated_at]
    stamps += [record.attempts[0].started_at, record.attempts[0].finished_at]  # type: ignore[list-item]
    for stamp in stamps:
        assert stamp.utcoffset() == timedelta(0)
        assert before <= stamp <= after
    assert record.created_at <= record.updated_at


async def test_failed_message_keeps_its_error(store: SqlStore) -> None:
    """finish_message records the error code and message of a failure."""
    await store.claim(new_request())
    error = EventError(code="sim:SIM-INVALID", message="number rejected", retryable=False)
    await store.finish_message("msg-1", State.FAILED, provider="sim", error=error)
    record = await store.get("msg-1")
    assert record is not None
    assert (record.state, record.error_code, record.error_message) == (
        State.FAILED,
        "sim:SIM-INVALID",
        "number rejected",
    )


async def test_possible_duplicate_once_set_is_never_cleared(store: SqlStore) -> None:
    """A later finish without the flag does not erase that a duplicate may have been sent."""
    await store.claim(new_request())
    await store.finish_message("msg-1", State.ACCEPTED, possible_duplicate=True)
    await store.finish_message("msg-1", State.SENT, provider="sim")
    record = await store.get("msg-1")
    assert record is not None
    assert record.possible_duplicate


async def test_get_of_an_unknown_id_is_none(store: SqlStore) -> None:
    """Asking for an id never claimed returns None."""
    assert await store.get("never-seen") is None


async def body_column(store: SqlStore, message_id: str) -> str | None:
    """The body as stored in the messages table."""
    async with store.engine.connect() as conn:
        result = await conn.execute(select(messages.c.body).where(messages.c.id == message_id))
        body: str | None = result.scalar_one()
        return body


async def test_otp_body_is_never_stored(store: SqlStore) -> None:
    """The messages table holds NULL for the body of an OTP message."""
    await store.claim(new_request("otp-1", kind="otp", body="Your code is 482913"))
    assert await body_column(store, "otp-1") is None


async def test_transactional_body_is_stored(store: SqlStore) -> None:
    """The body of a transactional message is kept for support."""
    await store.claim(new_request("tx-1", kind="transactional", body="Your parcel is on its way"))
    assert await body_column(store, "tx-1") == "Your parcel is on its way"


async def test_rejections_are_recorded_newest_first(store: SqlStore) -> None:
    """record_rejection keeps id (or None) and reason; rejections() lists the newest first."""
    before = datetime.now(UTC)
    await store.record_rejection("bad-1", 'field "to": not a valid phone number')
    await store.record_rejection(None, "invalid json at line 1 col 2")
    listed = await store.rejections()
    assert [(m, r) for m, r, _ in listed] == [
        (None, "invalid json at line 1 col 2"),
        ("bad-1", 'field "to": not a valid phone number'),
    ]
    for _, _, at in listed:
        assert at.utcoffset() == timedelta(0)
        assert at >= before


async def test_rejections_honours_its_limit(store: SqlStore) -> None:
    """rejections(limit) returns at most ``limit`` entries, the newest."""
    for n in range(5):
        await store.record_rejection(f"bad-{n}", "reason")
    assert [m for m, _, _ in await store.rejections(limit=2)] == ["bad-4", "bad-3"]


async def age(store: SqlStore, message_id: str, days: int) -> None:
    """Pretend ``message_id`` was last updated ``days`` ago."""
    async with store.engine.begin() as conn:
        await conn.execute(
            update(messages)
            .where(messages.c.id == message_id)
            .values(updated_at=datetime.now(UTC) - timedelta(days=days))
        )


async def count(store: SqlStore, table: Any) -> int:
    """Rows in ``table``."""
    async with store.engine.connect() as conn:
        return int((await conn.execute(select(func.count()).select_from(table))).scalar_one())


async def test_purge_deletes_only_old_messages_with_their_attempts(store: SqlStore) -> None:
    """Messages updated before the cutoff go, attempts included; recent ones stay."""
    for message_id in ("old", "new"):
        await store.claim(new_request(message_id))
        key = await store.start_attempt(message_id, 1, "sim")
        await store.finish_attempt(key, "sent", provider_message_id="pm")
    await age(store, "old", days=40)

    purged = await store.purge(datetime.now(UTC) - timedelta(days=30))

    assert purged == 1
    assert await store.get("old") is None
    recent = await store.get("new")
    assert recent is not None
    assert len(recent.attempts) == 1
    assert await count(store, attempts) == 1


async def test_purge_deletes_old_rejections(store: SqlStore) -> None:
    """Rejections older than the cutoff go too."""
    await store.record_rejection("bad", "reason")
    async with store.engine.begin() as conn:
        await conn.execute(update(rejections).values(at=datetime.now(UTC) - timedelta(days=40)))
    await store.record_rejection("recent", "reason")
    await store.purge(datetime.now(UTC) - timedelta(days=30))
    assert [m for m, _, _ in await store.rejections()] == ["recent"]


async def test_purge_with_nothing_old_deletes_nothing(store: SqlStore) -> None:
    """A cutoff before every record leaves everything in place."""
    await store.claim(new_request())
    assert await store.purge(datetime.now(UTC) - timedelta(days=1)) == 0
    assert await store.get("msg-1") is not None


async def test_purge_honours_a_cutoff_in_another_timezone(
    store: SqlStore, database_url: str, request: pytest.FixtureRequest
) -> None:
    """A cutoff is an instant: the same instant written at -05:00 purges the same records."""
    await store.claim(new_request("m"))
    cutoff = (datetime.now(UTC) + timedelta(hours=1)).astimezone(timezone(timedelta(hours=-5)))
    assert await store.purge(cutoff) == 1


async def test_ping_succeeds_on_a_reachable_database(store: SqlStore) -> None:
    """ping returns quietly when the database answers."""
    await store.ping()


async def test_running_migrations_twice_is_a_no_op(store: SqlStore) -> None:
    """Upgrading an up-to-date schema changes nothing and keeps the data."""
    await store.claim(new_request())
    await smsrelay.store.upgrade(store.engine)
    await smsrelay.store.upgrade(store.engine)
    assert await store.get("msg-1") is not None
    assert await count(store, messages) == 1


async def test_claim_can_start_the_first_attempt_in_the_same_commit(store: Any) -> None:
    """claim(request, provider) records attempt 1 as started and returns its key."""
    claim = await store.claim(new_request("first"), "alpha")
    assert claim.new and claim.attempts == 1 and claim.first_attempt is not None
    again = await store.claim(new_request("first"), "alpha")
    assert not again.new and again.open_attempt and again.first_attempt is None
    await store.finish_message(
        "first",
        State.SENT,
        provider="alpha",
        provider_message_id="p-1",
        closing_attempt=claim.first_attempt,
    )
    record = await store.get("first")
    assert [(a.number, a.provider, a.outcome) for a in record.attempts] == [(1, "alpha", "sent")]


async def test_get_of_an_id_that_cannot_exist_is_none(store: SqlStore) -> None:
    """A NUL (which PostgreSQL refuses in a query) or an over-long id is unknown, not an error."""
    assert await store.get("a\x00b") is None
    assert await store.get("x" * 65) is None
