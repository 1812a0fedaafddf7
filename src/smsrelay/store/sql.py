"""The SQLAlchemy implementation of ``Store``: SQLite (embedded default) and PostgreSQL."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import and_, delete, event, false, insert, or_, select, text, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Row
from sqlalchemy.exc import DataError, IntegrityError, SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine
from sqlalchemy.pool import StaticPool

from smsrelay.encoding import Encoded
from smsrelay.errors import StoreError, StoreRejected, StoreUnavailable
from smsrelay.models import AttemptOutcome, EventError, Kind, SendRequest, State, is_valid_id
from smsrelay.store.base import (
    Acceptance,
    AttemptBill,
    AttemptRecord,
    Claim,
    MessageRecord,
    PendingEvent,
    conflicting,
)
from smsrelay.store.receipts import ReceiptStore
from smsrelay.store.retention import (
    MESSAGES_PURGE_LOCK,
    PURGE_BATCH,
    delete_in_batches,
    purge_lock,
)
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
    """An engine tuned for the backend: one shared connection for SQLite, a pool otherwise.

    Statement parameters (bodies, numbers) are never rendered into exception text.
    """
    if url.startswith("sqlite"):
        engine = create_async_engine(
            url,
            poolclass=StaticPool,
            connect_args={"check_same_thread": False},
            hide_parameters=True,
        )
        event.listen(engine.sync_engine, "connect", _sqlite_pragmas)
        return engine
    return create_async_engine(
        url, pool_size=10, max_overflow=20, pool_pre_ping=True, hide_parameters=True
    )


# SQLSTATE classes that mean "these values can never be stored": data exceptions (22:
# a NUL byte, a value too long or malformed) and integrity violations (23). Every other
# error (08 connection, 57 shutdown, 53 resources, 40 rollback, 55 lock...) may pass.
_REFUSED_CLASSES = {"22": "data exception", "23": "integrity constraint violation"}


def store_error(exc: BaseException) -> StoreError:
    """The database's error as ours: the one place SQLAlchemy and driver errors translate.

    The text names the error class and SQLSTATE only, never the database's message:
    drivers quote the offending value in it.
    """
    orig = getattr(exc, "orig", None)
    sqlstate = getattr(orig, "sqlstate", None) or getattr(orig, "pgcode", None)
    if isinstance(sqlstate, str) and sqlstate[:2] in _REFUSED_CLASSES:
        return StoreRejected(
            f"the database refused this message ({_REFUSED_CLASSES[sqlstate[:2]]},"
            f" SQLSTATE {sqlstate})"
        )
    if sqlstate is None and isinstance(exc, IntegrityError | DataError):
        # SQLite names no SQLSTATE; its constraint failures are these classes.
        return StoreRejected(f"the database refused this message ({type(exc).__name__})")
    described = f"SQLSTATE {sqlstate}" if isinstance(sqlstate, str) else type(exc).__name__
    return StoreUnavailable(f"the database is unavailable ({described})")


@asynccontextmanager
async def _translated(
    opening: AbstractAsyncContextManager[AsyncConnection],
) -> AsyncIterator[AsyncConnection]:
    """``opening``'s connection, whose database errors leave as ``StoreError``.

    A refused or timed-out connect surfaces as a bare OSError/TimeoutError, so those
    are translated too, unless the caller's own block raised them (receipts publish
    events inside a transaction).
    """
    in_block = False
    try:
        async with opening as conn:
            try:
                yield conn
            except BaseException:
                in_block = True
                raise
    except SQLAlchemyError as exc:
        raise store_error(exc) from exc
    except (OSError, TimeoutError) as exc:
        if in_block:
            raise
        raise store_error(exc) from exc


def _sqlite_pragmas(dbapi_conn: Any, _: Any) -> None:
    cur = dbapi_conn.cursor()
    # WAL lets the CLI read while a worker writes; NORMAL sync is durable across a
    # process crash, which is the failure we guard against.
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute("PRAGMA synchronous=NORMAL")
    cur.execute("PRAGMA foreign_keys=ON")
    cur.execute("PRAGMA busy_timeout=5000")
    cur.close()


# Attempt outcomes that mean the provider may have the message: an open attempt (a
# worker died inside it), one a later worker closed as interrupted, or one whose answer
# never came. Rows written before the flag was committed with the interrupt carry no
# flag: the attempt still says so.
DUPLICATE_EVIDENCE = ("started", "interrupted", "unknown")


def bill_values(bill: AttemptBill | None) -> dict[str, Any]:
    """The ``attempts`` columns a bill sets: encoding and parts as sent, both costs."""
    if bill is None:
        return {}
    return {
        "sent_encoding": bill.encoded.sent.encoding.value,
        "sent_parts": bill.encoded.sent.count,
        "estimated_cost": _decimal_text(bill.estimated_cost),
        "currency": bill.currency,
        "actual_cost": _decimal_text(bill.actual_cost),
        "actual_currency": bill.actual_currency,
    }


def original_values(bill: AttemptBill | None) -> dict[str, Any]:
    """The ``messages`` columns a bill sets: the body's encoding and parts as written."""
    if bill is None:
        return {}
    original = bill.encoded.original
    return {"original_encoding": original.encoding.value, "original_parts": original.count}


def _decimal_text(value: Decimal | None) -> str | None:
    # Text keeps every digit on every backend (SQLite has no decimal type).
    return None if value is None else format(value, "f")[:24]


def _decimal(value: str | None) -> Decimal | None:
    return None if value is None else Decimal(value)


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
    request: SendRequest,
    now: datetime,
    first_provider: str | None = None,
    digest: str | None = None,
    *,
    claimed: bool = True,
) -> dict[str, Any]:
    """The ``messages`` row of a newly accepted request (``claimed``: by a worker)."""
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
        "request_digest": digest,
        "claimed": claimed,
    }


def take_unclaimed(ids: list[str], attempts_now: int, now: datetime) -> Any:
    """UPDATE marking the API-accepted messages among ``ids`` as claimed, returning their ids.

    Conditional on ``claimed`` being false, so of two workers racing for one message
    exactly one gets it (PostgreSQL re-checks the condition after the row lock).
    """
    return (
        update(messages)
        .where(messages.c.id.in_(ids), messages.c.claimed == false())
        .values(claimed=True, attempts=attempts_now, updated_at=now)
        .returning(messages.c.id)
    )


async def waiting_receipts(conn: AsyncConnection, sent: dict[str, tuple[str, str]]) -> set[str]:
    """Which of the just-sent messages (id → provider, provider message id) have receipts.

    Receipts can overtake the worker; the API keeps them unmatched until the send is
    recorded. One query for a whole batch of sends. Each branch of the OR must match an
    index on its own (``ix_receipts_message_id``; ``ix_receipts_provider_message_id`` on
    provider *and* provider message id): a provider message id alone matches none, and
    the database scans every receipt kept on every flush (58 ms at 500,000 receipts).
    """
    by_pmid = {pmid: (mid, provider) for mid, (provider, pmid) in sent.items()}
    providers = sorted({provider for provider, _ in sent.values()})
    rows = await conn.execute(
        select(receipts.c.message_id, receipts.c.provider, receipts.c.provider_message_id).where(
            or_(
                receipts.c.message_id.in_(list(sent)),
                and_(
                    receipts.c.provider.in_(providers),
                    receipts.c.provider_message_id.in_(list(by_pmid)),
                ),
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
        """A connection inside a transaction that commits on success.

        Database errors leave it as ``StoreUnavailable`` or ``StoreRejected``.
        """
        async with self._serial(), _translated(self.engine.begin()) as conn:
            yield conn

    @asynccontextmanager
    async def _read(self) -> AsyncIterator[AsyncConnection]:
        async with self._serial(), _translated(self.engine.connect()) as conn:
            yield conn

    def transaction(self) -> AbstractAsyncContextManager[AsyncConnection]:
        """For the store's other tables (``store.verifications``): serialised like ``_tx``."""
        return self._tx()

    def reading(self) -> AbstractAsyncContextManager[AsyncConnection]:
        """A read-only connection, serialised on SQLite like every other statement."""
        return self._read()

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

    @property
    def upsert(self) -> Callable[..., Any]:
        """The dialect's ``insert`` (it has ``on_conflict_do_nothing``)."""
        return postgresql.insert if self.engine.dialect.name == "postgresql" else sqlite.insert

    async def claim(
        self, request: SendRequest, first_provider: str | None = None, digest: str | None = None
    ) -> Claim:
        now = _now()
        row = message_row(request, now, first_provider, digest)
        # ON CONFLICT rather than catching the unique violation: an integrity error
        # from the store means a value it refuses (see store_error), never "seen before".
        stmt = self.upsert(messages).on_conflict_do_nothing(index_elements=["id"])
        async with self._tx() as conn:
            inserted = (await conn.execute(stmt.returning(messages.c.id), row)).first()
            key = None
            if inserted is not None:
                key = await self._first_attempt(conn, request.id, first_provider, now)
        if inserted is None:
            return await self._existing_claim(request.id, first_provider, digest)
        return Claim(
            new=True,
            state=State.ACCEPTED,
            attempts=row["attempts"],
            open_attempt=False,
            first_attempt=key,
        )

    async def _first_attempt(
        self, conn: AsyncConnection, message_id: str, provider: str | None, now: datetime
    ) -> int | None:
        if provider is None:
            return None
        result = await conn.execute(
            insert(attempts).values(first_attempt_row(message_id, provider, now))
        )
        return int(result.inserted_primary_key[0])  # type: ignore[index]

    async def _existing_claim(
        self, message_id: str, first_provider: str | None, digest: str | None
    ) -> Claim:
        now = _now()
        async with self._tx() as conn:
            msg = (
                await conn.execute(
                    select(
                        messages.c.state,
                        messages.c.attempts,
                        messages.c.possible_duplicate,
                        messages.c.request_digest,
                        messages.c.claimed,
                    ).where(messages.c.id == message_id)
                )
            ).one()
            if conflicting(msg.request_digest, digest):
                return Claim(
                    new=False,
                    state=State(msg.state),
                    attempts=msg.attempts,
                    open_attempt=False,
                    possible_duplicate=bool(msg.possible_duplicate),
                    conflict=True,
                )
            first = 1 if first_provider else 0
            if (
                not msg.claimed
                and (await conn.execute(take_unclaimed([message_id], first, now))).first()
            ):
                key = await self._first_attempt(conn, message_id, first_provider, now)
                return Claim(
                    new=True,
                    state=State.ACCEPTED,
                    attempts=first,
                    open_attempt=False,
                    first_attempt=key,
                )
            outcomes = {
                row.outcome
                for row in await conn.execute(
                    select(attempts.c.outcome)
                    .where(
                        attempts.c.message_id == message_id,
                        attempts.c.outcome.in_(DUPLICATE_EVIDENCE),
                    )
                    .distinct()
                )
            }
        return Claim(
            new=False,
            state=State(msg.state),
            attempts=msg.attempts,
            open_attempt="started" in outcomes,
            possible_duplicate=bool(msg.possible_duplicate) or len(outcomes - {"started"}) > 0,
        )

    async def accept(self, request: SendRequest, digest: str) -> Acceptance:
        """Record a request the API is about to publish, unclaimed, unless its id is known.

        The record lets ``get`` answer for the message before a worker takes it; the
        worker's ``claim`` then takes this record over as a new message.
        """
        row = message_row(request, _now(), digest=digest, claimed=False)
        for _ in range(2):  # the id can be purged or withdrawn between insert and read
            stmt = self.upsert(messages).on_conflict_do_nothing(index_elements=["id"])
            async with self._tx() as conn:
                inserted = (await conn.execute(stmt.returning(messages.c.id), row)).first()
            if inserted is not None:
                return Acceptance.NEW
            async with self._read() as conn:
                known = (
                    await conn.execute(
                        select(messages.c.request_digest, messages.c.claimed).where(
                            messages.c.id == request.id
                        )
                    )
                ).first()
            if known is not None:
                if conflicting(known.request_digest, digest):
                    return Acceptance.CONFLICT
                return Acceptance.KNOWN if known.claimed else Acceptance.QUEUED
        raise RuntimeError(f"message {request.id!r} can be neither inserted nor read")

    async def withdraw(self, message_id: str) -> None:
        """Forget an accepted message that was never published (no worker has claimed it)."""
        async with self._tx() as conn:
            await conn.execute(
                delete(messages).where(messages.c.id == message_id, messages.c.claimed == false())
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
        bill: AttemptBill | None = None,
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
                    **bill_values(bill),
                )
            )

    async def interrupt_open_attempts(self, message_id: str) -> None:
        now = _now()
        async with self._tx() as conn:
            await conn.execute(
                update(attempts)
                .where(attempts.c.message_id == message_id, attempts.c.outcome == "started")
                .values(outcome="interrupted", finished_at=now)
            )
            # The flag commits with the interrupt: once the open attempt is closed, it is
            # the only trace that the provider may have the message (another crash before
            # this round finishes must not erase it).
            await conn.execute(
                update(messages)
                .where(messages.c.id == message_id)
                .values(possible_duplicate=True, updated_at=now)
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
        bill: AttemptBill | None = None,
        trace_context: str | None = None,
    ) -> bool:
        values: dict[str, Any] = {
            **original_values(bill),
            "state": state.value,
            "provider": provider,
            "provider_message_id": provider_message_id,
            "segments": segments,
            "updated_at": _now(),
            "error_code": error.code if error else None,
            "error_message": error.message if error else None,
            "trace_context": trace_context,
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
                        **bill_values(bill),
                    )
                )
            await conn.execute(update(messages).where(messages.c.id == message_id).values(**values))
            if state is not State.SENT or not provider or not provider_message_id:
                return False
            waiting = await waiting_receipts(conn, {message_id: (provider, provider_message_id)})
        return message_id in waiting

    async def match_receipts(
        self, message_id: str, provider: str, provider_message_id: str
    ) -> list[PendingEvent]:
        receipts_ = ReceiptStore(self)
        return await receipts_.match_pending_receipts(message_id, provider, provider_message_id)

    async def events_published(self, keys: Sequence[int]) -> None:
        await ReceiptStore(self).published(keys)

    async def record_rejection(self, message_id: str | None, reason: str) -> None:
        async with self._tx() as conn:
            await conn.execute(
                insert(rejections).values(message_id=message_id, reason=reason, at=_now())
            )

    async def record_encoding(self, message_id: str, attempt_key: int, encoded: Encoded) -> None:
        original, sent = encoded.original, encoded.sent
        async with self._tx() as conn:
            await conn.execute(
                update(messages)
                .where(messages.c.id == message_id)
                .values(original_encoding=original.encoding.value, original_parts=original.count)
            )
            await conn.execute(
                update(attempts)
                .where(attempts.c.key == attempt_key)
                .values(sent_encoding=sent.encoding.value, sent_parts=sent.count)
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
        if not is_valid_id(message_id):  # e.g. a NUL, which PostgreSQL refuses with an error
            return None
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

    async def purge(self, older_than: datetime, batch_size: int = PURGE_BATCH) -> int:
        # In batches, one process at a time (store/retention.py); attempts and receipts
        # go with their message (ON DELETE CASCADE). 0 when another process is purging.
        cutoff = older_than.astimezone(UTC)
        async with purge_lock(self.engine, MESSAGES_PURGE_LOCK) as held:
            if not held:
                return 0
            old = messages.c.updated_at < cutoff
            purged = await delete_in_batches(self._tx, messages, messages.c.id, old, batch_size)
            old = rejections.c.at < cutoff
            await delete_in_batches(self._tx, rejections, rejections.c.key, old, batch_size)
        return purged

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
        sent_encoding=row.sent_encoding,
        sent_parts=row.sent_parts,
        estimated_cost=_decimal(row.estimated_cost),
        currency=row.currency,
        actual_cost=_decimal(row.actual_cost),
        actual_currency=row.actual_currency,
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
        original_encoding=row.original_encoding,
        original_parts=row.original_parts,
        resends=int(row.resends or 0),
    )
