"""Delivery receipts, refused webhooks, replay digests and the event outbox, in SQL.

``ReceiptStore`` works on a ``SqlStore``'s engine and shares its transactions (and so,
on SQLite, its lock). What receipts mean for a message is decided by the rules in
``smsrelay.receipts``; this module keeps them and applies those decisions:

- a receipt whose message is not known yet (it overtook the worker's record of the
  send) is kept with no message and linked once the provider's message id is recorded
  (the worker calls ``Store.match_receipts`` after a send; the API does it on the next
  receipt or lookup);
- every state change is written to ``event_outbox`` in the transaction that decides
  it. Nothing is published here: the caller publishes after the commit, then calls
  ``published``; whatever a crash or a broker outage leaves behind, ``outbox`` hands
  to the next drain (at least once).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Collection, Hashable, Iterable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from sqlalchemy import and_, delete, func, insert, or_, select, update
from sqlalchemy.engine import Row
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection

from smsrelay.errors import ReplayedReceipt
from smsrelay.models import Receipt, ReceiptStatus, State, StatusEvent
from smsrelay.receipts import (
    ReceiptRecord,
    apply_pending_receipts,
    identity,
    next_state,
    observe_delays,
    receipt_error,
    resolve,
)
from smsrelay.store.base import PendingEvent, ReceiptDelay
from smsrelay.store.receipt_costs import cost_rows, record_costs
from smsrelay.store.retention import RECEIPTS_PURGE_LOCK, delete_in_batches, purge_lock
from smsrelay.store.schema import (
    attempts,
    event_outbox,
    messages,
    receipt_digests,
    receipt_refusals,
    receipts,
)

if TYPE_CHECKING:
    from smsrelay.metrics import Metrics
    from smsrelay.store.sql import SqlStore

# ``apply_pending_receipts`` lived here; the worker still imports it from here.
__all__ = [
    "Accepted",
    "ReceiptRecord",
    "ReceiptStore",
    "Refusal",
    "apply_pending_receipts",
    "resolve",
]


@dataclass(frozen=True, slots=True)
class Refusal:
    """A webhook that was refused, and why."""

    provider: str
    reason: str
    at: datetime


@dataclass(frozen=True, slots=True)
class Accepted:
    """What one accepted webhook changed: receipts newly kept, events to publish."""

    kept: list[Receipt]
    events: list[PendingEvent]


class ReceiptStore:
    """Receipts, refusals, replay digests and the outbox over a ``SqlStore``'s engine.

    With ``metrics``, every settling that commits is observed in
    ``smsrelay_send_to_receipt_seconds``; without, the caller observes the returned
    events' ``delay`` (``smsrelay.receipts.observe_delays``).
    """

    def __init__(
        self,
        store: SqlStore,
        replay_window: timedelta = timedelta(days=30),
        metrics: Metrics | None = None,
    ) -> None:
        self.store = store
        self.replay_window = replay_window
        self.metrics = metrics

    async def accept(
        self, provider: str, digest: str, batch: Sequence[Receipt], now: datetime
    ) -> Accepted:
        """Record a verified webhook and its receipts; commit their state changes.

        Raises ``ReplayedReceipt`` when ``digest`` was accepted within the replay window.
        A receipt equal to one already kept is dropped (``smsrelay.receipts``, "once").
        """
        async with self.store._tx() as conn:
            await self._remember(conn, provider, digest, now)
            found: dict[str, tuple[Row[Any], set[str]]] = {}
            kept: list[Receipt] = []
            billed: list[tuple[str, str, Receipt]] = []
            seen: set[Hashable] = set()
            for receipt in batch:
                message = await _find_message(conn, provider, receipt)
                if identity(receipt) in seen or await _known(conn, provider, receipt, message):
                    continue
                seen.add(identity(receipt))
                kept.append(receipt)
                await conn.execute(insert(receipts).values(_row(provider, receipt, message, now)))
                if message is not None:
                    _, ids = found.setdefault(message.id, (message, set()))
                    ids.update(filter(None, [receipt.provider_message_id]))
                    billed.append((message.id, provider, receipt))
            await record_costs(conn, cost_rows(billed))
            events = []
            for message, ids in found.values():
                await _link(conn, message.id, provider, ids)
                event = await _settle(conn, message, provider, now)
                if event is not None:
                    events.append(event)
        self.observe(events)
        return Accepted(kept, events)

    def observe(self, committed: Sequence[PendingEvent]) -> None:
        """Count committed settlings in ``smsrelay_send_to_receipt_seconds`` (with metrics)."""
        if self.metrics is not None:
            observe_delays(self.metrics, committed)

    @asynccontextmanager
    async def accepting(
        self, provider: str, digest: str, batch: Sequence[Receipt], now: datetime
    ) -> AsyncIterator[list[StatusEvent]]:
        """``accept``, then yield the committed events to publish in the block.

        Leaving the block normally marks them published; if it raises, they stay in
        the outbox for the next drain (nothing is rolled back: the receipts are kept).
        """
        accepted = await self.accept(provider, digest, batch, now)
        async with self._publishing(accepted.events) as events:
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

    async def match(
        self, message_id: str, provider: str, provider_message_id: str, now: datetime | None = None
    ) -> list[PendingEvent]:
        """Link receipts kept for ``provider_message_id`` to the message; commit the change.

        Returns the committed event to publish (empty when the receipts decide nothing).
        """
        async with self.store._tx() as conn:
            message = await _lock(conn, message_id)
            if message is None:
                return []
            await _link(conn, message_id, provider, {provider_message_id})
            event = await _settle(conn, message, provider, now or datetime.now(UTC))
        self.observe([event] if event else [])
        return [event] if event else []

    @asynccontextmanager
    async def matching(
        self, message_id: str, provider: str, provider_message_id: str, now: datetime | None = None
    ) -> AsyncIterator[list[StatusEvent]]:
        """``match``, then yield the committed events to publish in the block (as ``accepting``)."""
        pending = await self.match(message_id, provider, provider_message_id, now)
        async with self._publishing(pending) as events:
            yield events

    @asynccontextmanager
    async def _publishing(self, pending: list[PendingEvent]) -> AsyncIterator[list[StatusEvent]]:
        yield [item.event for item in pending]
        if pending:
            await self.published([item.key for item in pending])

    async def match_pending_receipts(
        self, message_id: str, provider: str, provider_message_id: str
    ) -> list[PendingEvent]:
        """Call once a send is recorded: apply receipts that arrived before it.

        Nothing is applied (one indexed read) when no receipt waits for the message.
        """
        if not await self.has_receipts(message_id, provider, provider_message_id):
            return []
        return await self.match(message_id, provider, provider_message_id)

    async def outbox(
        self, older_than: datetime | None = None, limit: int = 100
    ) -> list[PendingEvent]:
        """Events committed and not yet marked published, oldest first.

        With ``older_than``, only those created before it: younger ones are most likely
        being published by the request that wrote them.
        """
        query = select(event_outbox).order_by(event_outbox.c.key).limit(limit)
        if older_than is not None:
            query = query.where(event_outbox.c.created_at < older_than)
        async with self.store._read() as conn:
            rows = await conn.execute(query)
            return [PendingEvent(r.key, StatusEvent.model_validate_json(r.event)) for r in rows]

    async def published(self, keys: Sequence[int]) -> None:
        """Drop published events from the outbox."""
        if keys:
            async with self.store._tx() as conn:
                await conn.execute(delete(event_outbox).where(event_outbox.c.key.in_(list(keys))))

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
        return next_state(state, history) is not None

    async def trace_contexts(self, provider: str, pmids: Collection[str]) -> list[tuple[str, str]]:
        """(message id, stored traceparent) of ``provider``'s sends known by these ids."""
        if not pmids:
            return []
        async with self.store._read() as conn:
            rows = await conn.execute(
                select(messages.c.id, messages.c.trace_context).where(
                    messages.c.provider == provider,
                    messages.c.provider_message_id.in_(list(pmids)),
                    messages.c.trace_context.is_not(None),
                )
            )
            return [(row.id, row.trace_context) for row in rows]

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
        # In batches, one process at a time, as the messages' purge (store/retention.py).
        unmatched = receipts.c.message_id.is_(None) & (receipts.c.received_at < older_than)
        old = (
            (receipt_refusals, receipt_refusals.c.key, receipt_refusals.c.at < older_than),
            (receipt_digests, receipt_digests.c.key, receipt_digests.c.at < older_than),
            (receipts, receipts.c.key, unmatched),
        )
        total = 0
        async with purge_lock(self.store.engine, RECEIPTS_PURGE_LOCK) as held:
            if not held:
                return 0
            for table, key, where in old:
                total += await delete_in_batches(self.store._tx, table, key, where)
        return total


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


async def _known(
    conn: AsyncConnection, provider: str, receipt: Receipt, message: Row[Any] | None
) -> bool:
    """Whether the same report (``smsrelay.receipts.identity``) is kept already."""
    same = [
        receipts.c.provider == provider,
        receipts.c.part.is_not_distinct_from(receipt.part),
        receipts.c.status == receipt.status.value,
        receipts.c.provider_status == receipt.provider_status[:64],
        receipts.c.error_code.is_not_distinct_from(receipt.error_code),
    ]
    if receipt.provider_message_id:
        same.append(receipts.c.provider_message_id == receipt.provider_message_id)
    elif message is not None:
        same += [receipts.c.provider_message_id.is_(None), receipts.c.message_id == message.id]
    else:
        return False  # nothing names it: kept, and it can never match a message anyway
    found = await conn.execute(select(receipts.c.key).where(*same).limit(1))
    return found.first() is not None


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
) -> PendingEvent | None:
    """Apply the rules' decision to the message; its event, written to the outbox."""
    history = await _history(conn, message.id)
    decided = decide(message, provider, now, history)
    if decided is None:
        return None
    values, event = decided
    await conn.execute(update(messages).where(messages.c.id == message.id).values(**values))
    result = await conn.execute(insert(event_outbox).values(outbox_row(event, now)))
    delay = await _delay(conn, message, provider, history)
    return PendingEvent(int(result.inserted_primary_key[0]), event, delay)  # type: ignore[index]


def decide(
    message: Row[Any], provider: str, now: datetime, history: Sequence[ReceiptRecord]
) -> tuple[dict[str, Any], StatusEvent] | None:
    """The rules' decision for a message and its history: the message's new values and event."""
    state = next_state(State(message.state), history)
    if state is None:
        return None
    status = resolve(history)
    error = receipt_error(provider, history, status) if status else None
    values = {
        "state": state.value,
        "updated_at": now,
        "error_code": error.code if error else None,
        "error_message": error.message if error else None,
    }
    parts = max((r.parts for r in history if r.parts), default=None)
    event = StatusEvent(
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
    return values, event


def outbox_row(event: StatusEvent, now: datetime) -> dict[str, Any]:
    """The outbox row of a committed event."""
    return {"event": event.model_dump_json(), "created_at": now}


async def _delay(
    conn: AsyncConnection, message: Row[Any], provider: str, history: Sequence[ReceiptRecord]
) -> ReceiptDelay | None:
    """From the provider's answer to the send (its latest sent attempt) to the last
    report received; 0 for receipts that overtook the send's record or a skewed clock."""
    sent_at = await conn.execute(
        select(func.coalesce(attempts.c.finished_at, attempts.c.started_at))
        .where(
            attempts.c.message_id == message.id,
            attempts.c.provider == provider,
            attempts.c.outcome == "sent",
        )
        .order_by(attempts.c.number.desc())
        .limit(1)
    )
    return receipt_delay(message, provider, sent_at.scalar(), history)


def receipt_delay(
    message: Row[Any], provider: str, sent: datetime | None, history: Sequence[ReceiptRecord]
) -> ReceiptDelay | None:
    """The send → receipt delay of a settled message, from its sent time and its history."""
    reports = [r.received_at for r in history if r.status is not ReceiptStatus.PENDING]
    if sent is None or not reports:
        return None
    seconds = (max(reports) - _aware(sent)).total_seconds()
    return ReceiptDelay(provider, message.country, max(0.0, seconds))


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
