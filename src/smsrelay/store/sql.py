"""The SQLAlchemy implementation of ``Store``: SQLite (embedded default) and PostgreSQL."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import delete, event, insert, or_, select, text, update
from sqlalchemy.engine import Row
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine
from sqlalchemy.pool import StaticPool

from smsrelay.models import AttemptOutcome, EventError, Kind, SendRequest, State
from smsrelay.store.base import AttemptRecord, Claim, MessageRecord
from smsrelay.store.schema import attempts, messages, receipts, rejections


def _now() -> datetime:
    return datetime.now(UTC)


def _aware(value: datetime | None) -> datetime | None:
    # SQLite hands back naive datetimes; everything we write is UTC.
    if value is not None and value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    return value


def _utc(value: datetime | None) -> datetime | None:
    # SQLite keeps wall time and drops the offset: store and compare instants in UTC.
    return value.astimezone(UTC) if value is not None else None


def make_engine(url: str) -> AsyncEngine:
    """An engine tuned for the backend: one shared connection for SQLite, a pool otherwise."""
    if url.startswith("sqlite"):
        engine = create_async_engine(
            url, poolclass=StaticPool, connect_args={"check_same_thread": False}
        )
        event.listen(engine.sync_engine, "connect", _sqlite_pragmas)
        return engine
    return create_async_engine(url, pool_size=10, max_overflow=20, pool_pre_ping=True)


def _sqlite_pragmas(dbapi_conn: Any, _: Any) -> None:
    cur = dbapi_conn.cursor()
    # WAL lets the CLI read while a worker writes; NORMAL sync is durable across a
    # process crash, which is the failure we guard against.
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute("PRAGMA synchronous=NORMAL")
    cur.execute("PRAGMA foreign_keys=ON")
    cur.execute("PRAGMA busy_timeout=5000")
    cur.close()


def first_attempt_row(message_id: str, provider: str, now: datetime) -> dict[str, Any]:
    """The ``attempts`` row of attempt 1, started together with the claim."""
    return {
        "message_id": message_id,
        "number": 1,
        "provider": provider,
        "outcome": "started",
        "started_at": now,
    }


def message_row(
    request: SendRequest, now: datetime, first_provider: str | None = None
) -> dict[str, Any]:
    """The ``messages`` row of a newly accepted request."""
    return {
        "id": request.id,
        "to": request.to,
        "country": request.country,
        "kind": request.kind.value,
        "sender": request.sender,
        # The store never holds a one-time code.
        "body": None if request.kind is Kind.OTP else request.body,
        "tags": dict(request.tags),
        "expires_at": _utc(request.expires_at),
        "state": State.ACCEPTED.value,
        "attempts": 1 if first_provider else 0,
        "possible_duplicate": False,
        "created_at": now,
        "updated_at": now,
    }


async def waiting_receipts(conn: AsyncConnection, sent: dict[str, tuple[str, str]]) -> set[str]:
    """Which of the just-sent messages (id → provider, provider message id) have receipts.

    Receipts can overtake the worker; the API keeps them unmatched until the send is
    recorded. One query for a whole batch of sends.
    """
    by_pmid = {pmid: (mid, provider) for mid, (provider, pmid) in sent.items()}
    rows = await conn.execute(
        select(receipts.c.message_id, receipts.c.provider, receipts.c.provider_message_id).where(
            or_(
                receipts.c.message_id.in_(list(sent)),
                receipts.c.provider_message_id.in_(list(by_pmid)),
            )
        )
    )
    found: set[str] = set()
    for row in rows:
        if row.message_id in sent:
            found.add(row.message_id)
        elif row.message_id is None and row.provider_message_id in by_pmid:
            mid, provider = by_pmid[row.provider_message_id]
            if row.provider == provider:
                found.add(mid)
    return found


class SqlStore:
    """``Store`` over an async SQLAlchemy engine."""

    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine
        # SQLite runs on one shared connection: without this lock, concurrent sends
        # would interleave their statements inside each other's transactions.
        self._lock = asyncio.Lock() if engine.dialect.name == "sqlite" else None

    @asynccontextmanager
    async def _tx(self) -> AsyncIterator[AsyncConnection]:
        """A connection inside a transaction that commits on success."""
        async with self._serial(), self.engine.begin() as conn:
            yield conn

    @asynccontextmanager
    async def _read(self) -> AsyncIterator[AsyncConnection]:
        async with self._serial(), self.engine.connect() as conn:
            yield conn

    @asynccontextmanager
    async def _serial(self) -> AsyncIterator[None]:
        if self._lock is None:
            yield
        else:
            async with self._lock:
                yield

    @classmethod
    def from_url(cls, url: str) -> SqlStore:
        """A store on a new engine for ``url``."""
        return cls(make_engine(url))

    async def claim(self, request: SendRequest, first_provider: str | None = None) -> Claim:
        now = _now()
        row = message_row(request, now, first_provider)
        try:
            async with self._tx() as conn:
                await conn.execute(insert(messages).values(**row))
                key = None
                if first_provider is not None:
                    result = await conn.execute(
                        insert(attempts).values(first_attempt_row(request.id, first_provider, now))
                    )
                    key = int(result.inserted_primary_key[0])  # type: ignore[index]
            return Claim(
                new=True,
                state=State.ACCEPTED,
                attempts=row["attempts"],
                open_attempt=False,
                first_attempt=key,
            )
        except IntegrityError:
            return await self._existing_claim(request.id)

    async def _existing_claim(self, message_id: str) -> Claim:
        async with self._read() as conn:
            msg = (
                await conn.execute(
                    select(
                        messages.c.state, messages.c.attempts, messages.c.possible_duplicate
                    ).where(messages.c.id == message_id)
                )
            ).one()
            open_count = (
                await conn.execute(
                    select(attempts.c.key)
                    .where(attempts.c.message_id == message_id, attempts.c.outcome == "started")
                    .limit(1)
                )
            ).first()
        return Claim(
            new=False,
            state=State(msg.state),
            attempts=msg.attempts,
            open_attempt=open_count is not None,
            possible_duplicate=bool(msg.possible_duplicate),
        )

    async def start_attempt(self, message_id: str, number: int, provider: str) -> int:
        now = _now()
        async with self._tx() as conn:
            result = await conn.execute(
                insert(attempts).values(
                    message_id=message_id,
                    number=number,
                    provider=provider,
                    outcome="started",
                    started_at=now,
                )
            )
            await conn.execute(
                update(messages)
                .where(messages.c.id == message_id)
                .values(attempts=number, updated_at=now)
            )
        key = result.inserted_primary_key
        assert key is not None
        return int(key[0])

    async def finish_attempt(
        self,
        attempt_key: int,
        outcome: AttemptOutcome,
        *,
        provider_message_id: str | None = None,
        error: EventError | None = None,
    ) -> None:
        async with self._tx() as conn:
            await conn.execute(
                update(attempts)
                .where(attempts.c.key == attempt_key)
                .values(
                    outcome=outcome,
                    finished_at=_now(),
                    provider_message_id=provider_message_id,
                    error_code=error.code if error else None,
                    error_message=error.message if error else None,
                )
            )

    async def interrupt_open_attempts(self, message_id: str) -> None:
        async with self._tx() as conn:
            await conn.execute(
                update(attempts)
                .where(attempts.c.message_id == message_id, attempts.c.outcome == "started")
                .values(outcome="interrupted", finished_at=_now())
            )

    async def finish_message(
        self,
        message_id: str,
        state: State,
        *,
        provider: str | None = None,
        provider_message_id: str | None = None,
        segments: int | None = None,
        error: EventError | None = None,
        possible_duplicate: bool = False,
        closing_attempt: int | None = None,
    ) -> bool:
        values: dict[str, Any] = {
            "state": state.value,
            "provider": provider,
            "provider_message_id": provider_message_id,
            "segments": segments,
            "updated_at": _now(),
            "error_code": error.code if error else None,
            "error_message": error.message if error else None,
        }
        if possible_duplicate:
            values["possible_duplicate"] = True
        async with self._tx() as conn:
            if closing_attempt is not None:
                await conn.execute(
                    update(attempts)
                    .where(attempts.c.key == closing_attempt)
                    .values(
                        outcome="sent" if state is State.SENT else "failed",
                        finished_at=values["updated_at"],
                        provider_message_id=provider_message_id,
                        error_code=values["error_code"],
                        error_message=values["error_message"],
                    )
                )
            await conn.execute(update(messages).where(messages.c.id == message_id).values(**values))
            if state is not State.SENT or not provider or not provider_message_id:
                return False
            waiting = await waiting_receipts(conn, {message_id: (provider, provider_message_id)})
        return message_id in waiting

    async def record_rejection(self, message_id: str | None, reason: str) -> None:
        async with self._tx() as conn:
            await conn.execute(
                insert(rejections).values(message_id=message_id, reason=reason, at=_now())
            )

    async def rejections(self, limit: int = 100) -> list[tuple[str | None, str, datetime]]:
        """The latest rejections, newest first."""
        async with self._read() as conn:
            rows = await conn.execute(
                select(rejections.c.message_id, rejections.c.reason, rejections.c.at)
                .order_by(rejections.c.key.desc())
                .limit(limit)
            )
            return [(r.message_id, r.reason, _aware(r.at) or _now()) for r in rows]

    async def get(self, message_id: str) -> MessageRecord | None:
        async with self._read() as conn:
            msg = (await conn.execute(select(messages).where(messages.c.id == message_id))).first()
            if msg is None:
                return None
            rows = await conn.execute(
                select(attempts).where(attempts.c.message_id == message_id).order_by(attempts.c.key)
            )
            return _message_record(msg, [_attempt_record(r) for r in rows])

    async def reopen_failed(self, message_id: str) -> SendRequest | None:
        """Move a ``failed`` message back to ``accepted`` for a resend; its request, or None.

        None when it is not ``failed`` (any more) or its body was never kept (OTP).
        Conditional on the state, so two resends at once reopen it once.
        """
        failed = (messages.c.id == message_id) & (messages.c.state == State.FAILED.value)
        async with self._tx() as conn:
            row = (await conn.execute(select(messages).where(failed))).first()
            if row is None or row.body is None:
                return None
            reopened = await conn.execute(
                update(messages)
                .where(failed)
                .values(
                    state=State.ACCEPTED.value,
                    resends=messages.c.resends + 1,
                    error_code=None,
                    error_message=None,
                    updated_at=_now(),
                )
            )
            if reopened.rowcount != 1:
                return None
        return _request(row)

    async def undo_reopen(self, message_id: str) -> None:
        """Put a reopened message back to ``failed`` (its resend could not be published)."""
        async with self._tx() as conn:
            await conn.execute(
                update(messages)
                .where(messages.c.id == message_id, messages.c.state == State.ACCEPTED.value)
                .values(state=State.FAILED.value, resends=messages.c.resends - 1)
            )

    async def failed_since(self, since: datetime) -> list[str]:
        """Ids of messages that ended ``failed`` at or after ``since``, oldest first."""
        async with self._read() as conn:
            rows = await conn.execute(
                select(messages.c.id)
                .where(
                    messages.c.state == State.FAILED.value,
                    messages.c.updated_at >= since.astimezone(UTC),
                )
                .order_by(messages.c.updated_at)
            )
            return [row.id for row in rows]

    async def purge(self, older_than: datetime) -> int:
        async with self._tx() as conn:
            cutoff = older_than.astimezone(UTC)
            old = select(messages.c.id).where(messages.c.updated_at < cutoff)
            await conn.execute(delete(attempts).where(attempts.c.message_id.in_(old)))
            result = await conn.execute(delete(messages).where(messages.c.updated_at < cutoff))
            await conn.execute(delete(rejections).where(rejections.c.at < cutoff))
        return int(result.rowcount or 0)

    async def ping(self) -> None:
        async with self._read() as conn:
            await conn.execute(text("SELECT 1"))

    async def close(self) -> None:
        await self.engine.dispose()


def _attempt_record(row: Row[Any]) -> AttemptRecord:
    return AttemptRecord(
        number=row.number,
        provider=row.provider,
        outcome=row.outcome,
        started_at=_aware(row.started_at) or _now(),
        finished_at=_aware(row.finished_at),
        provider_message_id=row.provider_message_id,
        error_code=row.error_code,
        error_message=row.error_message,
    )


def _request(row: Row[Any]) -> SendRequest:
    """The request a ``messages`` row was made from (its body must be kept)."""
    fields: dict[str, Any] = {"id": row.id, "to": row.to, "body": row.body, "kind": row.kind}
    if row.sender:
        fields["from"] = row.sender
    if row.tags:
        fields["tags"] = dict(row.tags)
    if row.expires_at is not None:
        fields["expires_at"] = _aware(row.expires_at)
    return SendRequest.model_validate(fields)


def _message_record(row: Row[Any], tries: list[AttemptRecord]) -> MessageRecord:
    return MessageRecord(
        id=row.id,
        to=row.to,
        country=row.country,
        kind=row.kind,
        state=State(row.state),
        provider=row.provider,
        provider_message_id=row.provider_message_id,
        segments=row.segments,
        error_code=row.error_code,
        error_message=row.error_message,
        possible_duplicate=bool(row.possible_duplicate),
        created_at=_aware(row.created_at) or _now(),
        updated_at=_aware(row.updated_at) or _now(),
        tags=dict(row.tags or {}),
        attempts=tries,
        resends=int(row.resends or 0),
    )
