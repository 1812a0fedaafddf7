"""Delivery health read from the store: what the workers' receipt feed reads.

Every query is bounded by an index: receipts by their key (the primary key), messages by
``ix_messages_updated_at``, a message's attempts and receipts by their message id.
"""

from __future__ import annotations

from collections.abc import Collection
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import and_, func, or_, select
from sqlalchemy.engine import Row

from smsrelay.health.receipt_feed import FinalReceipt, Unanswered
from smsrelay.models import ReceiptStatus, State
from smsrelay.store.schema import attempts, messages, receipts
from smsrelay.store.sql import SqlStore

__all__ = ["HealthReads"]

_PENDING = ReceiptStatus.PENDING.value
_DECIDED = (State.DELIVERED.value, State.UNDELIVERED.value, State.FAILED.value)


class HealthReads:
    """The ``ReceiptSource`` of ``smsrelay.health.receipt_feed`` over a ``SqlStore``."""

    def __init__(self, store: SqlStore) -> None:
        self.store = store

    async def last_receipt_key(self) -> int:
        """The newest receipt's key (0 when there is none)."""
        async with self.store.reading() as conn:
            found = await conn.execute(select(func.max(receipts.c.key)))
            return int(found.scalar() or 0)

    async def final_receipts(
        self, after: int, waiting: Collection[int], limit: int
    ) -> list[FinalReceipt]:
        """First final receipts of their message with key > ``after`` or in ``waiting``.

        A receipt not linked to a message yet comes back with ``country`` None.
        """
        earlier = receipts.alias("earlier")
        first_final = ~(
            select(earlier.c.key)
            .where(
                earlier.c.message_id == receipts.c.message_id,
                earlier.c.status != _PENDING,
                earlier.c.key < receipts.c.key,
            )
            .exists()
        )
        sent_at = (
            select(func.max(attempts.c.finished_at))
            .where(
                attempts.c.message_id == receipts.c.message_id,
                attempts.c.provider == receipts.c.provider,
                attempts.c.outcome == "sent",
            )
            .scalar_subquery()
        )
        picked = receipts.c.key > after
        if waiting:
            picked = or_(picked, receipts.c.key.in_(list(waiting)))
        query = (
            select(
                receipts.c.key,
                receipts.c.provider,
                receipts.c.status,
                receipts.c.received_at,
                messages.c.country,
                messages.c.state,
                sent_at.label("sent_at"),
            )
            .select_from(receipts.outerjoin(messages, messages.c.id == receipts.c.message_id))
            .where(and_(picked, receipts.c.status != _PENDING, first_final))
            .order_by(receipts.c.key)
            .limit(limit)
        )
        async with self.store.reading() as conn:
            rows = await conn.execute(query)
            return [_final(row) for row in rows]

    async def unanswered(self, since: datetime, until: datetime, limit: int) -> list[Unanswered]:
        """Messages still ``sent`` whose last change is in (since, until], oldest first."""
        query = (
            select(messages.c.provider, messages.c.country, messages.c.updated_at)
            .where(
                messages.c.updated_at > since,
                messages.c.updated_at <= until,
                messages.c.state == State.SENT.value,
                messages.c.provider.is_not(None),
            )
            .order_by(messages.c.updated_at)
            .limit(limit)
        )
        async with self.store.reading() as conn:
            rows = await conn.execute(query)
            return [Unanswered(r.provider, r.country, _aware(r.updated_at)) for r in rows]


def _final(row: Row[Any, Any, Any, Any, Any, Any, Any]) -> FinalReceipt:
    if row.country is None:
        return FinalReceipt(row.key, row.provider, None, False, None)
    # Receipts that decided the message speak for all of it (every part); else this one.
    delivered = (
        row.state == State.DELIVERED.value
        if row.state in _DECIDED
        else row.status == ReceiptStatus.DELIVERED.value
    )
    latency = None
    if row.sent_at is not None:
        latency = max((_aware(row.received_at) - _aware(row.sent_at)).total_seconds(), 0.0)
    return FinalReceipt(row.key, row.provider, row.country, delivered, latency)


def _aware(value: datetime) -> datetime:
    # SQLite hands back naive datetimes; everything the store writes is UTC.
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value
