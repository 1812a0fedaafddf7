"""Group commit for the worker's hot path.

Hundreds of sends are in flight at once; giving each of them its own transaction (and,
on SQLite, its own trip to the database thread) costs more than the send itself. The
``BatchingStore`` queues the hot-path writes — claim, start attempt, finish attempt,
finish message — and one flusher task writes everything queued so far in a single
transaction, one multi-row statement per kind of write, then wakes the callers. A
caller still returns only once its write is committed, so "ack after the outcome is
recorded" holds; callers merely share commits. Batches form by themselves: whatever
queues while one flush runs goes into the next.

Everything else (reads, rejections, purge) goes straight to the wrapped ``SqlStore``.

When the database cannot be reached, the writes that record what a provider already did
(how an attempt ended, the message's outcome) are not failed: they are kept and written
again with backoff until the database is back, and their callers wait, holding the
delivery unacked. Failing them would give the message back to the queue and send it a
second time. Writes made before a send (claim, start an attempt) fail at once: nothing
was sent, and the message comes back later.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import bindparam, func, insert, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import (
    DataError,
    DBAPIError,
    IntegrityError,
    NotSupportedError,
    ProgrammingError,
)
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from smsrelay.encoding import Encoded
from smsrelay.errors import StoreRejected, StoreUnavailable
from smsrelay.logging import get_logger
from smsrelay.models import AttemptOutcome, EventError, SendRequest, State
from smsrelay.store.base import AttemptBill, Claim, MessageRecord, PendingEvent, conflicting
from smsrelay.store.schema import attempts, messages
from smsrelay.store.sql import (
    DUPLICATE_EVIDENCE,
    SqlStore,
    bill_values,
    first_attempt_row,
    message_row,
    original_values,
    take_unclaimed,
    waiting_receipts,
)

log = get_logger(__name__)

MAX_BATCH = 1000
# Writes that record a provider's answer: kept across an outage, never dropped.
KEPT_KINDS = frozenset({"attempt", "message"})
FIRST_PAUSE = 0.2
MAX_PAUSE = 5.0


@dataclass
class _Op:
    kind: str
    params: dict[str, Any]
    future: asyncio.Future[Any] = field(
        default_factory=lambda: asyncio.get_running_loop().create_future()
    )


class BatchingStore:
    """A ``Store`` whose hot-path writes share transactions; see the module docstring."""

    def __init__(self, inner: SqlStore) -> None:
        self.inner = inner
        self._queue: list[_Op] = []
        self._wakeup = asyncio.Event()
        self._flusher: asyncio.Task[None] | None = None
        # Set while nothing is queued or being written.
        self._idle = asyncio.Event()
        self._idle.set()
        self._pause = FIRST_PAUSE
        self._kept = 0
        dialect = inner.engine.dialect.name
        self._insert: Callable[..., Any] = (
            postgresql.insert if dialect == "postgresql" else sqlite.insert
        )

    # -- the queued writes -------------------------------------------------------------

    async def claim(
        self, request: SendRequest, first_provider: str | None = None, digest: str | None = None
    ) -> Claim:
        now = _now()
        result: Claim = await self._submit(
            "claim",
            row=message_row(request, now, first_provider, digest),
            first=first_attempt_row(request.id, first_provider, now) if first_provider else None,
        )
        return result

    async def start_attempt(self, message_id: str, number: int, provider: str) -> int:
        key: int = await self._submit(
            "start", message_id=message_id, number=number, provider=provider, started_at=_now()
        )
        return key

    async def finish_attempt(
        self,
        attempt_key: int,
        outcome: AttemptOutcome,
        *,
        provider_message_id: str | None = None,
        error: EventError | None = None,
        bill: AttemptBill | None = None,
    ) -> None:
        await self._submit(
            "attempt",
            **_attempt_values(attempt_key, outcome, provider_message_id, error, bill=bill),
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
        now = _now()
        original = original_values(bill)
        waiting: bool = await self._submit(
            "message",
            b_id=message_id,
            state=state.value,
            provider=provider,
            provider_message_id=provider_message_id,
            segments=segments,
            error_code=error.code if error else None,
            error_message=error.message if error else None,
            possible_duplicate=possible_duplicate,
            trace_context=trace_context,
            updated_at=now,
            original_encoding=original.get("original_encoding"),
            original_parts=original.get("original_parts"),
            closing=(
                _attempt_values(
                    closing_attempt,
                    "sent" if state is State.SENT else "failed",
                    provider_message_id,
                    error,
                    now,
                    bill,
                )
                if closing_attempt is not None
                else None
            ),
        )
        return bool(waiting)

    @property
    def kept_writes(self) -> int:
        """Writes of providers' answers waiting for the database to be reachable again."""
        return self._kept

    # -- straight through ----------------------------------------------------------------

    @property
    def engine(self) -> AsyncEngine:
        """The wrapped store's engine."""
        return self.inner.engine

    async def rejections(self, limit: int = 100) -> list[tuple[str | None, str, datetime]]:
        """The latest rejections, newest first."""
        return await self.inner.rejections(limit)

    async def interrupt_open_attempts(self, message_id: str) -> None:
        await self.inner.interrupt_open_attempts(message_id)

    async def record_rejection(self, message_id: str | None, reason: str) -> None:
        await self.inner.record_rejection(message_id, reason)

    async def record_encoding(self, message_id: str, attempt_key: int, encoded: Encoded) -> None:
        await self.inner.record_encoding(message_id, attempt_key, encoded)

    async def match_receipts(
        self, message_id: str, provider: str, provider_message_id: str
    ) -> list[PendingEvent]:
        return await self.inner.match_receipts(message_id, provider, provider_message_id)

    async def events_published(self, keys: Sequence[int]) -> None:
        await self.inner.events_published(keys)

    async def get(self, message_id: str) -> MessageRecord | None:
        return await self.inner.get(message_id)

    async def purge(self, older_than: datetime) -> int:
        return await self.inner.purge(older_than)

    async def ping(self) -> None:
        await self.inner.ping()

    async def close(self) -> None:
        if self._flusher is not None:
            # Let queued writes commit (their callers are waiting) before stopping.
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(10):
                    await self._idle.wait()
            self._flusher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._flusher
            self._flusher = None
        for op in self._queue:
            op.future.set_exception(RuntimeError("store closed"))
        self._queue.clear()
        await self.inner.close()

    # -- the flusher -----------------------------------------------------------------------

    async def _submit(self, kind: str, **params: Any) -> Any:
        op = _Op(kind, params)
        self._queue.append(op)
        self._idle.clear()
        self._wakeup.set()
        if self._flusher is None or self._flusher.done():
            self._flusher = asyncio.create_task(self._run(), name="smsrelay-store-flusher")
        return await op.future

    async def _run(self) -> None:
        while True:
            await self._wakeup.wait()
            self._wakeup.clear()
            while self._queue:
                batch, self._queue = self._queue[:MAX_BATCH], self._queue[MAX_BATCH:]
                kept = await self._flush(batch)
                self._kept = len(kept)
                if kept:
                    # The database is unreachable: try these again, with what queued meanwhile.
                    self._queue[:0] = kept
                    log.warning("store_unavailable", kept_writes=len(kept), retry_in=self._pause)
                    await asyncio.sleep(self._pause)
                    self._pause = min(self._pause * 2, MAX_PAUSE)
                else:
                    self._pause = FIRST_PAUSE
            self._idle.set()

    async def _flush(self, batch: list[_Op]) -> list[_Op]:
        """Write ``batch``; returns the ops kept for another try (the store was unreachable)."""
        try:
            results = await self._write(batch)
        except Exception as exc:
            if unreachable(exc):
                return _fail_all_but_kept(batch, exc)
            if len(batch) == 1:
                if not batch[0].future.done():
                    batch[0].future.set_exception(exc)
                return []
            # One bad write must not fail its neighbours: retry each on its own.
            kept: list[_Op] = []
            for op in batch:
                kept += await self._flush([op])
            return kept
        for op in batch:
            if not op.future.done():
                op.future.set_result(results.get(id(op)))
        return []

    async def _write(self, batch: list[_Op]) -> dict[int, Any]:
        results: dict[int, Any] = {}
        async with self.inner._tx() as conn:
            by_kind: dict[str, list[_Op]] = {}
            for op in batch:
                by_kind.setdefault(op.kind, []).append(op)
            if "claim" in by_kind:
                results.update(await self._claims(conn, by_kind["claim"]))
            if "start" in by_kind:
                results.update(await self._starts(conn, by_kind["start"]))
            if "attempt" in by_kind:
                await _update_attempts(conn, [op.params for op in by_kind["attempt"]])
            if "message" in by_kind:
                results.update(await self._messages(conn, by_kind["message"]))
        return results

    async def _claims(self, conn: AsyncConnection, ops: Sequence[_Op]) -> dict[int, Any]:
        stmt = self._insert(messages).on_conflict_do_nothing(index_elements=["id"])
        inserted = {
            row.id
            for row in await conn.execute(
                stmt.returning(messages.c.id), [o.params["row"] for o in ops]
            )
        }
        seen = {o.params["row"]["id"]: o.params["row"] for o in ops}
        for message_id in inserted:
            del seen[message_id]
        known = await _known_claims(conn, seen) if seen else {}
        # Inserted now, or accepted by the API and taken over now: a new message, for
        # the first op of its id only (a second one in the same batch is a duplicate).
        new: dict[str, _Op] = {}
        for o in ops:
            if known.get(o.params["row"]["id"]) is None:
                new.setdefault(o.params["row"]["id"], o)
        keys = await self._first_attempts(conn, list(new.values()))
        return {id(o): known.get(o.params["row"]["id"]) or _claimed(o, new, keys) for o in ops}

    async def _first_attempts(self, conn: AsyncConnection, ops: Sequence[_Op]) -> dict[int, int]:
        starting = [o for o in ops if o.params["first"] is not None]
        if not starting:
            return {}
        return await _insert_attempts(conn, starting, [o.params["first"] for o in starting])

    async def _starts(self, conn: AsyncConnection, ops: Sequence[_Op]) -> dict[int, Any]:
        rows = [{**o.params, "outcome": "started"} for o in ops]
        keys = await _insert_attempts(conn, ops, rows)
        await conn.execute(
            update(messages)
            .where(messages.c.id == bindparam("b_id"))
            .values(attempts=bindparam("b_number"), updated_at=bindparam("b_at")),
            [
                {
                    "b_id": o.params["message_id"],
                    "b_number": o.params["number"],
                    "b_at": o.params["started_at"],
                }
                for o in ops
            ],
        )
        return keys

    async def _messages(self, conn: AsyncConnection, ops: Sequence[_Op]) -> dict[int, Any]:
        closing = [o.params["closing"] for o in ops if o.params["closing"] is not None]
        if closing:
            await _update_attempts(conn, closing)
        plain = [o for o in ops if not o.params["possible_duplicate"]]
        flagged = [o for o in ops if o.params["possible_duplicate"]]
        columns = ("state", "provider", "provider_message_id", "segments", "error_code",
                   "error_message", "trace_context", "updated_at")  # fmt: skip
        # Kept when a write has none (COALESCE): an expiry does not erase the encoding.
        kept = ("original_encoding", "original_parts")
        for group, extra in ((plain, {}), (flagged, {"possible_duplicate": True})):
            if not group:
                continue
            await conn.execute(
                update(messages)
                .where(messages.c.id == bindparam("b_id"))
                .values(
                    **{c: bindparam(c) for c in columns},
                    **{c: func.coalesce(bindparam(c), messages.c[c]) for c in kept},
                    **extra,
                ),
                [
                    {"b_id": o.params["b_id"], **{c: o.params[c] for c in (*columns, *kept)}}
                    for o in group
                ],
            )
        sent = {
            o.params["b_id"]: (o.params["provider"], o.params["provider_message_id"])
            for o in ops
            if o.params["state"] == State.SENT.value
            and o.params["provider"]
            and o.params["provider_message_id"]
        }
        waiting = await waiting_receipts(conn, sent) if sent else set()
        return {id(o): o.params["b_id"] in waiting for o in ops}


def _claimed(op: _Op, new: dict[str, _Op], keys: dict[int, int]) -> Claim:
    """The claim of an id this batch made new; ``op`` is its first op or a duplicate of it."""
    first = new[op.params["row"]["id"]]
    if first is not op:
        # As the direct store would report it: the first op's attempt is under way.
        return Claim(
            new=False,
            state=State.ACCEPTED,
            attempts=first.params["row"]["attempts"],
            open_attempt=id(first) in keys,
        )
    return Claim(
        new=True,
        state=State.ACCEPTED,
        attempts=op.params["row"]["attempts"],
        open_attempt=False,
        first_attempt=keys.get(id(op)),
    )


async def _insert_attempts(
    conn: AsyncConnection, ops: Sequence[_Op], rows: list[dict[str, Any]]
) -> dict[int, int]:
    """Insert attempt rows; each op's new key, found by (message id, number).

    A plain multi-row insert and one look-up cost a fraction of an ordered RETURNING,
    which SQLAlchemy runs row by row on SQLite (~9 against ~60 us a row here).
    """
    await conn.execute(insert(attempts), rows)
    found = await conn.execute(
        select(attempts.c.key, attempts.c.message_id, attempts.c.number).where(
            attempts.c.message_id.in_({r["message_id"] for r in rows})
        )
    )
    keys = {(r.message_id, r.number): int(r.key) for r in found}
    return {
        id(o): keys[(row["message_id"], row["number"])] for o, row in zip(ops, rows, strict=True)
    }


async def _known_claims(
    conn: AsyncConnection, rows: dict[str, dict[str, Any]]
) -> dict[str, Claim | None]:
    """What was known of ids that were there already (id → the row we meant to insert).

    None for an id the API accepted and no worker had claimed: it is claimed now and
    is new to the caller.
    """
    ids = list(rows)
    found = list(
        await conn.execute(
            select(
                messages.c.id,
                messages.c.state,
                messages.c.attempts,
                messages.c.possible_duplicate,
                messages.c.request_digest,
                messages.c.claimed,
            ).where(messages.c.id.in_(ids))
        )
    )
    conflicts = {r.id for r in found if conflicting(r.request_digest, rows[r.id]["request_digest"])}
    taken = await _take_unclaimed(
        conn, [rows[r.id] for r in found if not r.claimed and r.id not in conflicts]
    )
    evidence: dict[str, set[str]] = {}
    for r in await conn.execute(
        select(attempts.c.message_id, attempts.c.outcome)
        .where(attempts.c.message_id.in_(ids), attempts.c.outcome.in_(DUPLICATE_EVIDENCE))
        .distinct()
    ):
        evidence.setdefault(r.message_id, set()).add(r.outcome)
    return {
        r.id: None
        if r.id in taken
        else _known_claim(r, evidence.get(r.id, set()), conflict=r.id in conflicts)
        for r in found
    }


def _known_claim(row: Any, evidence: set[str], *, conflict: bool) -> Claim:
    return Claim(
        new=False,
        state=State(row.state),
        attempts=row.attempts,
        open_attempt="started" in evidence and not conflict,
        possible_duplicate=bool(row.possible_duplicate) or len(evidence - {"started"}) > 0,
        conflict=conflict,
    )


async def _take_unclaimed(conn: AsyncConnection, rows: list[dict[str, Any]]) -> set[str]:
    """Claim the API-accepted messages among ``rows``; the ids this transaction got."""
    taken: set[str] = set()
    for attempts_now in (0, 1):
        ids = [r["id"] for r in rows if r["attempts"] == attempts_now]
        if ids:
            now = rows[0]["updated_at"]
            result = await conn.execute(take_unclaimed(ids, attempts_now, now))
            taken.update(row.id for row in result)
    return taken


async def _update_attempts(conn: AsyncConnection, rows: list[dict[str, Any]]) -> None:
    await conn.execute(
        update(attempts)
        .where(attempts.c.key == bindparam("b_key"))
        .values(
            outcome=bindparam("b_outcome"),
            finished_at=bindparam("b_at"),
            provider_message_id=bindparam("b_pmid"),
            error_code=bindparam("b_code"),
            error_message=bindparam("b_message"),
            # A write without a bill keeps what an earlier one recorded.
            **{c: func.coalesce(bindparam(f"b_{c}"), attempts.c[c]) for c in BILL_COLUMNS},
        ),
        rows,
    )


BILL_COLUMNS = ("sent_encoding", "sent_parts", "estimated_cost", "currency", "actual_cost",
                "actual_currency")  # fmt: skip


def _attempt_values(
    key: int,
    outcome: AttemptOutcome,
    pmid: str | None,
    error: EventError | None,
    at: datetime | None = None,
    bill: AttemptBill | None = None,
) -> dict[str, Any]:
    billed = bill_values(bill)
    return {
        **{f"b_{c}": billed.get(c) for c in BILL_COLUMNS},
        "b_key": key,
        "b_outcome": outcome,
        "b_at": at or _now(),
        "b_pmid": pmid,
        "b_code": error.code if error else None,
        "b_message": error.message if error else None,
    }


def _now() -> datetime:
    return datetime.now(UTC)


# The statement itself is wrong: writing it again cannot help.
_PERMANENT = (IntegrityError, DataError, ProgrammingError, NotSupportedError)


def unreachable(exc: BaseException) -> bool:
    """Did ``exc`` come from the database being unreachable (down, refusing, restarting)?

    Connection failures and errors of a connection that died are; errors in what was
    written (a constraint, a value the column cannot hold, a bad statement) are not.
    The store's translated errors are judged by the driver error they came from.
    """
    if isinstance(exc, StoreRejected):
        return False
    if isinstance(exc, StoreUnavailable) and exc.__cause__ is not None:
        return unreachable(exc.__cause__)
    if isinstance(exc, DBAPIError):
        return exc.connection_invalidated or not isinstance(exc, _PERMANENT)
    return isinstance(exc, OSError | TimeoutError)


def _fail_all_but_kept(batch: list[_Op], exc: Exception) -> list[_Op]:
    kept = []
    for op in batch:
        if op.future.done():
            continue
        if op.kind in KEPT_KINDS:
            kept.append(op)
        else:
            op.future.set_exception(exc)
    return kept
