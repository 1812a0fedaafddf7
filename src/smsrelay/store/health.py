"""Delivery health read from the store: the workers' receipt feed and the health report.

Every query is bounded by an index: receipts by their key (the primary key), messages by
``ix_messages_updated_at``, a message's attempts and receipts by their message id. The
report's windows are on attempts' ``finished_at``, which has no index: a message's
``updated_at`` is set when each attempt starts and when it is finished, so
``updated_at >= since - SEND_SLACK`` (indexed) holds every message with an attempt
finished since ``since`` (an attempt lasts less than ``SEND_SLACK``), and the exact
bound is then applied to the few attempts of those messages.
"""

from __future__ import annotations

from collections.abc import Collection
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import ColumnElement, and_, case, func, literal, or_, select
from sqlalchemy.engine import Row

from smsrelay.health.delivery import LATENCY_EDGES
from smsrelay.health.receipt_feed import FinalReceipt, Unanswered
from smsrelay.health.report import FailureGroup, OutcomeGroup
from smsrelay.models import ReceiptStatus, State
from smsrelay.store.schema import attempts, messages, receipts
from smsrelay.store.sql import SqlStore

__all__ = ["HealthReads"]

_PENDING = ReceiptStatus.PENDING.value
_DECIDED = (State.DELIVERED.value, State.UNDELIVERED.value, State.FAILED.value)
_NOT_DELIVERED = (State.UNDELIVERED.value, State.FAILED.value)
# Longer than any provider attempt lasts (timeouts are seconds to a minute or two).
SEND_SLACK = timedelta(minutes=15)


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

    async def outcomes(
        self, since: datetime, provider: str | None = None, country: str | None = None
    ) -> list[OutcomeGroup]:
        """Messages sent since ``since`` by provider, country, state now, failure code
        (not delivered) and delivered-receipt latency bucket (delivered)."""
        mine = messages.c.provider == attempts.c.provider
        state = case((mine, messages.c.state), else_=literal(State.SENT.value))
        code = case(
            (and_(mine, messages.c.state.in_(_NOT_DELIVERED)), messages.c.error_code),
            else_=None,
        )
        receipt_at = (
            select(func.min(receipts.c.received_at))
            .where(
                receipts.c.message_id == messages.c.id,
                receipts.c.status == ReceiptStatus.DELIVERED.value,
            )
            .scalar_subquery()
        )
        elapsed = self._seconds(receipt_at, attempts.c.finished_at)
        bucket = case(
            (and_(mine, messages.c.state == State.DELIVERED.value), _bucket(elapsed)),
            else_=None,
        )
        columns = (attempts.c.provider, messages.c.country, state, code, bucket)
        query = (
            select(*columns, func.count())
            .select_from(attempts.join(messages, messages.c.id == attempts.c.message_id))
            .where(*self._window(since, provider, country), attempts.c.outcome == "sent")
            .group_by(*columns)
        )
        async with self.store.reading() as conn:
            rows = await conn.execute(query)
            return [
                OutcomeGroup(r[0], r[1], r[2], r[3], int(r[4]) if r[4] is not None else None, r[5])
                for r in rows
            ]

    async def send_failures(
        self, since: datetime, provider: str | None = None, country: str | None = None
    ) -> list[FailureGroup]:
        """Attempts finished since ``since`` that the provider failed, grouped."""
        columns = (
            attempts.c.provider,
            messages.c.country,
            attempts.c.outcome,
            attempts.c.error_code,
        )
        query = (
            select(*columns, func.count())
            .select_from(attempts.join(messages, messages.c.id == attempts.c.message_id))
            .where(
                *self._window(since, provider, country),
                attempts.c.outcome.in_(("failed", "transient", "unknown")),
            )
            .group_by(*columns)
        )
        async with self.store.reading() as conn:
            rows = await conn.execute(query)
            return [FailureGroup(r[0], r[1], r[2], r[3], r[4]) for r in rows]

    def _window(
        self, since: datetime, provider: str | None, country: str | None
    ) -> list[ColumnElement[bool]]:
        where = [
            messages.c.updated_at >= since - SEND_SLACK,  # the index; see the module docstring
            attempts.c.finished_at >= since,
        ]
        if provider is not None:
            where.append(attempts.c.provider == provider)
        if country is not None:
            where.append(messages.c.country == country)
        return where

    def _seconds(self, later: Any, earlier: Any) -> ColumnElement[Any]:
        if self.store.engine.dialect.name == "sqlite":
            return (func.julianday(later) - func.julianday(earlier)) * 86400.0
        return func.extract("epoch", later - earlier)


def _bucket(seconds: ColumnElement[Any]) -> ColumnElement[Any]:
    """The ``LATENCY_EDGES`` bucket of ``seconds`` (as ``bisect_left``); NULL stays NULL."""
    whens = [(seconds <= edge, literal(i)) for i, edge in enumerate(LATENCY_EDGES)]
    return case((seconds.is_(None), None), *whens, else_=literal(len(LATENCY_EDGES)))


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
