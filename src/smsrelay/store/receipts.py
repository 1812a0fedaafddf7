"""Delivery receipts, refused webhooks and replay digests, beside the message store.

``ReceiptStore`` works on a ``SqlStore``'s engine and shares its transactions (and so,
on SQLite, its lock). A receipt becomes part of its message's history; the message's
state follows its receipts:

- a final receipt (delivered, undelivered, failed) sets the state when the message
  has been recorded as sent (``sent``, ``delivered``, ``undelivered``, ``failed``);
  ``pending`` receipts are kept and change nothing;
- a multipart message is ``delivered`` only once every part is: the count of distinct
  parts whose latest receipt says delivered reaches ``parts``; any part that ends
  failed or undelivered decides the state;
- a receipt whose message is not known yet (it overtook the worker's record of the
  send) is kept with no message and linked by ``match_pending_receipts`` once the
  provider's message id is recorded (the worker calls ``apply_pending_receipts``
  after a send; the API does it on the next receipt or lookup).

Every state change comes back as the ``StatusEvent`` to publish.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol

from sqlalchemy import and_, delete, insert, or_, select, update
from sqlalchemy.engine import Row
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection

from smsrelay.errors import ReplayedReceipt
from smsrelay.logging import get_logger
from smsrelay.models import EventError, Receipt, ReceiptStatus, State, StatusEvent
from smsrelay.store.schema import attempts, messages, receipt_digests, receipt_refusals, receipts
from smsrelay.store.sql import SqlStore

log = get_logger(__name__)

# States a receipt may change: the message was handed to a provider at some point.
UPDATABLE = frozenset({State.SENT, State.DELIVERED, State.UNDELIVERED, State.FAILED})
_FINAL = {
    ReceiptStatus.DELIVERED: State.DELIVERED,
    ReceiptStatus.UNDELIVERED: State.UNDELIVERED,
    ReceiptStatus.FAILED: State.FAILED,
}


@dataclass(frozen=True, slots=True)
class ReceiptRecord:
    """One stored delivery report."""

    provider: str
    provider_message_id: str | None
    status: ReceiptStatus
    provider_status: str
    error_code: str | None
    part: int | None
    parts: int | None
    at: datetime | None
    received_at: datetime


@dataclass(frozen=True, slots=True)
class Refusal:
    """A webhook that was refused, and why."""

    provider: str
    reason: str
    at: datetime


def resolve(history: Sequence[ReceiptRecord]) -> ReceiptStatus | None:
    """The final status a message's receipts add up to, or None while they do not decide.

    Per part, the latest final receipt counts (pending never overrides a final one); a
    receipt without a part speaks for the whole message.
    """
    latest: dict[int | None, ReceiptRecord] = {}
    for record in _in_time_order(history):
        if record.status is not ReceiptStatus.PENDING:
            latest[record.part] = record
    whole = latest.pop(None, None)
    if latest:
        statuses = {r.status for r in latest.values()}
        for bad in (ReceiptStatus.FAILED, ReceiptStatus.UNDELIVERED):
            if bad in statuses:
                return bad
        parts = max((r.parts or 1 for r in history), default=1)
        if len(latest) >= parts:
            return ReceiptStatus.DELIVERED
    return whole.status if whole else None


class ReceiptStore:
    """Receipts, refusals and replay digests over the engine (and lock) of a ``SqlStore``."""

    def __init__(self, store: SqlStore, replay_window: timedelta = timedelta(days=30)) -> None:
        self.store = store
        self.replay_window = replay_window

    @asynccontextmanager
    async def accepting(
        self, provider: str, digest: str, batch: Sequence[Receipt], now: datetime
    ) -> AsyncIterator[list[StatusEvent]]:
        """Record a verified webhook and its receipts; yields the state changes.

        Everything commits when the block exits normally, so the caller publishes the
        events inside it: a failed publish rolls back and the provider's retry is taken.
        Raises ``StaleReceipt`` when ``digest`` was accepted within the replay window.
        """
        async with self.store._tx() as conn:
            await self._remember(conn, provider, digest, now)
            found: dict[str, tuple[Row[Any], set[str]]] = {}
            for receipt in batch:
                message = await _find_message(conn, provider, receipt)
                await conn.execute(insert(receipts).values(_row(provider, receipt, message, now)))
                if message is not None:
                    _, ids = found.setdefault(message.id, (message, set()))
                    ids.update(filter(None, [receipt.provider_message_id]))
            events = []
            for message, ids in found.values():
                await _link(conn, message.id, provider, ids)
                event = await _settle(conn, message, provider, now)
                if event is not None:
                    events.append(event)
            yield events

    async def _remember(
        self, conn: AsyncConnection, provider: str, digest: str, now: datetime
    ) -> None:
        expired = now - self.replay_window
        await conn.execute(
            delete(receipt_digests).where(
                receipt_digests.c.provider == provider,
                receipt_digests.c.digest == digest,
                receipt_digests.c.at < expired,
            )
        )
        try:
            await conn.execute(
                insert(receipt_digests).values(provider=provider, digest=digest, at=now)
            )
        except IntegrityError:
            raise ReplayedReceipt("this webhook was received before (replayed)") from None

    async def refuse(self, provider: str, reason: str, at: datetime) -> None:
        """Keep a trace of a refused webhook; nothing else changes."""
        async with self.store._tx() as conn:
            await conn.execute(
                insert(receipt_refusals).values(provider=provider, reason=reason, at=at)
            )

    @asynccontextmanager
    async def matching(
        self, message_id: str, provider: str, provider_message_id: str, now: datetime | None = None
    ) -> AsyncIterator[list[StatusEvent]]:
        """Link receipts kept for ``provider_message_id`` to the message; yields the change.

        Commits when the block exits normally (publish the events inside it).
        """
        async with self.store._tx() as conn:
            message = await _lock(conn, message_id)
            if message is None:
                yield []
                return
            await _link(conn, message_id, provider, {provider_message_id})
            event = await _settle(conn, message, provider, now or datetime.now(UTC))
            yield [event] if event else []

    async def match_pending_receipts(
        self, message_id: str, provider: str, provider_message_id: str
    ) -> list[StatusEvent]:
        """Call once a send is recorded: apply receipts that arrived before it.

        Returns the state change to publish (empty when the receipts decide nothing).
        """
        async with self.matching(message_id, provider, provider_message_id) as events:
            return events

    async def needs_matching(
        self, message_id: str, provider: str, provider_message_id: str, state: State
    ) -> bool:
        """True when kept receipts wait for this message or its state lags its receipts."""
        async with self.store._read() as conn:
            waiting = await conn.execute(
                select(receipts.c.key)
                .where(
                    receipts.c.message_id.is_(None),
                    receipts.c.provider == provider,
                    receipts.c.provider_message_id == provider_message_id,
                )
                .limit(1)
            )
            if waiting.first() is not None:
                return True
            history = await _history(conn, message_id)
        status = resolve(history)
        return state in UPDATABLE and status is not None and _FINAL[status] is not state

    async def has_receipts(self, message_id: str, provider: str, provider_message_id: str) -> bool:
        """True when any receipt is linked to the message or kept for its provider id."""
        async with self.store._read() as conn:
            found = await conn.execute(
                select(receipts.c.key)
                .where(
                    or_(
                        receipts.c.message_id == message_id,
                        and_(
                            receipts.c.message_id.is_(None),
                            receipts.c.provider == provider,
                            receipts.c.provider_message_id == provider_message_id,
                        ),
                    )
                )
                .limit(1)
            )
            return found.first() is not None

    async def receipts_for(self, message_id: str) -> list[ReceiptRecord]:
        """The message's receipts in the order they arrived."""
        async with self.store._read() as conn:
            return await _history(conn, message_id)

    async def unmatched(self, provider: str) -> list[ReceiptRecord]:
        """Receipts of ``provider`` kept without a message, oldest first."""
        async with self.store._read() as conn:
            rows = await conn.execute(
                select(receipts)
                .where(receipts.c.message_id.is_(None), receipts.c.provider == provider)
                .order_by(receipts.c.key)
            )
            return [_record(r) for r in rows]

    async def refusals(self, limit: int = 100) -> list[Refusal]:
        """The latest refused webhooks, newest first."""
        async with self.store._read() as conn:
            rows = await conn.execute(
                select(receipt_refusals).order_by(receipt_refusals.c.key.desc()).limit(limit)
            )
            return [Refusal(r.provider, r.reason, _aware(r.at)) for r in rows]

    async def purge(self, older_than: datetime) -> int:
        """Forget refusals, digests and never-matched receipts older than ``older_than``.

        Matched receipts go with their message (``ON DELETE CASCADE``).
        """
        async with self.store._tx() as conn:
            total = 0
            for stmt in (
                delete(receipt_refusals).where(receipt_refusals.c.at < older_than),
                delete(receipt_digests).where(receipt_digests.c.at < older_than),
                delete(receipts).where(
                    receipts.c.message_id.is_(None), receipts.c.received_at < older_than
                ),
            ):
                total += int((await conn.execute(stmt)).rowcount or 0)
        return total


class EventSink(Protocol):
    """Where status events go (the dispatcher's sink)."""

    async def publish(self, event: StatusEvent) -> None:
        """Publish one event; raise if it could not be published."""


async def apply_pending_receipts(
    store: object, events: EventSink, message_id: str, provider: str, provider_message_id: str
) -> None:
    """For the worker, once a send is recorded: apply receipts that overtook it, publish.

    A no-op for stores that keep no receipts (test fakes) and, after one indexed read,
    for the usual message no receipt has reached yet. Best effort: on failure the
    receipts stay kept and the next receipt or ``GET /v1/messages/{id}`` applies them.
    """
    # The worker's store may wrap the SqlStore (group commit: store/batch.py).
    sql = store if isinstance(store, SqlStore) else getattr(store, "inner", None)
    if not isinstance(sql, SqlStore):
        return
    receipts_ = ReceiptStore(sql)
    try:
        if not await receipts_.has_receipts(message_id, provider, provider_message_id):
            return
        async with receipts_.matching(message_id, provider, provider_message_id) as changes:
            for event in changes:
                await events.publish(event)
    except Exception as exc:  # the send is recorded either way; matching can wait
        log.warning("pending_receipts_deferred", id=message_id, error=type(exc).__name__)


async def _find_message(conn: AsyncConnection, provider: str, receipt: Receipt) -> Row[Any] | None:
    """The message a receipt is about (locked for the transaction), by provider id or ours."""
    pmid = receipt.provider_message_id
    if pmid:
        row = await _lock_where(
            conn, messages.c.provider == provider, messages.c.provider_message_id == pmid
        )
        if row is not None:
            return row
        via_attempt = await conn.execute(
            select(attempts.c.message_id)
            .where(attempts.c.provider == provider, attempts.c.provider_message_id == pmid)
            .limit(1)
        )
        message_id = via_attempt.scalar()
        if message_id is not None:
            return await _lock(conn, message_id)
    return await _lock(conn, receipt.message_id) if receipt.message_id else None


async def _lock(conn: AsyncConnection, message_id: str) -> Row[Any] | None:
    return await _lock_where(conn, messages.c.id == message_id)


async def _lock_where(conn: AsyncConnection, *where: Any) -> Row[Any] | None:
    # FOR UPDATE (PostgreSQL; SQLite is serialised anyway) so that concurrent receipts
    # for the parts of one message see each other before deciding its state.
    result = await conn.execute(select(messages).where(*where).limit(1).with_for_update())
    return result.first()


async def _link(conn: AsyncConnection, message_id: str, provider: str, ids: Iterable[str]) -> None:
    ids = [i for i in ids if i]
    if ids:
        await conn.execute(
            update(receipts)
            .where(
                receipts.c.message_id.is_(None),
                receipts.c.provider == provider,
                receipts.c.provider_message_id.in_(ids),
            )
            .values(message_id=message_id)
        )


async def _history(conn: AsyncConnection, message_id: str) -> list[ReceiptRecord]:
    rows = await conn.execute(
        select(receipts).where(receipts.c.message_id == message_id).order_by(receipts.c.key)
    )
    return [_record(r) for r in rows]


async def _settle(
    conn: AsyncConnection, message: Row[Any], provider: str, now: datetime
) -> StatusEvent | None:
    """Bring the message's state in line with its receipts; the event when it changed."""
    current = State(message.state)
    if current not in UPDATABLE:
        return None  # not handed to a provider yet: the send's record comes first
    history = await _history(conn, message.id)
    status = resolve(history)
    if status is None or _FINAL[status] is current:
        return None
    state = _FINAL[status]
    error = _error(provider, history, status)
    await conn.execute(
        update(messages)
        .where(messages.c.id == message.id)
        .values(
            state=state.value,
            updated_at=now,
            error_code=error.code if error else None,
            error_message=error.message if error else None,
        )
    )
    parts = max((r.parts for r in history if r.parts), default=None)
    return StatusEvent(
        id=message.id,
        state=state,
        provider=provider,
        provider_message_id=message.provider_message_id,
        attempt=message.attempts,
        error=error,
        segments=parts or message.segments,
        tags=dict(message.tags or {}),
        at=now,
        possible_duplicate=bool(message.possible_duplicate),
    )


def _error(
    provider: str, history: Sequence[ReceiptRecord], status: ReceiptStatus
) -> EventError | None:
    if status is ReceiptStatus.DELIVERED:
        return None
    last = [r for r in _in_time_order(history) if r.status is status][-1]
    code = last.error_code or last.provider_status
    detail = f" (error {last.error_code})" if last.error_code else ""
    return EventError(
        code=f"{provider}:{code}",
        message=f"{provider} reported {last.provider_status}{detail}",
        retryable=False,
    )


def _in_time_order(history: Sequence[ReceiptRecord]) -> list[ReceiptRecord]:
    # The provider's timestamp where it gave one: reports can arrive out of order.
    return sorted(history, key=lambda r: r.at or r.received_at)


def _row(
    provider: str, receipt: Receipt, message: Row[Any] | None, now: datetime
) -> dict[str, Any]:
    return {
        "message_id": message.id if message is not None else None,
        "provider": provider,
        "provider_message_id": receipt.provider_message_id,
        "status": receipt.status.value,
        "provider_status": receipt.provider_status[:64],
        "error_code": receipt.error_code,
        "part": receipt.part,
        "parts": receipt.parts,
        "at": _utc(receipt.at),
        "received_at": now,
    }


def _record(row: Row[Any]) -> ReceiptRecord:
    return ReceiptRecord(
        provider=row.provider,
        provider_message_id=row.provider_message_id,
        status=ReceiptStatus(row.status),
        provider_status=row.provider_status,
        error_code=row.error_code,
        part=row.part,
        parts=row.parts,
        at=_aware(row.at) if row.at is not None else None,
        received_at=_aware(row.received_at),
    )


def _utc(value: datetime | None) -> datetime | None:
    # SQLite keeps wall time and drops the offset: store instants in UTC.
    if value is None:
        return None
    return value.astimezone(UTC) if value.tzinfo is not None else value.replace(tzinfo=UTC)


def _aware(value: datetime) -> datetime:
    # SQLite hands back naive datetimes; everything we write is UTC.
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value
