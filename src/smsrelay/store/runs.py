"""The rows a market simulation is judged on: its messages and their provider attempts."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy import select

from smsrelay.store.schema import attempts, messages
from smsrelay.store.sql import SqlStore


@dataclass(frozen=True, slots=True)
class RunMessage:
    """One message of the run: where it went and what became of it."""

    id: str
    country: str
    state: str
    provider: str | None
    created_at: datetime


@dataclass(frozen=True, slots=True)
class RunAttempt:
    """One provider attempt: its provider, outcome, time and estimated cost (decimal text)."""

    message_id: str
    number: int
    provider: str
    outcome: str
    started_at: datetime
    finished_at: datetime | None
    estimated_cost: str | None
    actual_cost: str | None


class RunStore:
    """Reads a run's messages (ids starting with its prefix) and their attempts.

    Reads go through ``SqlStore.reading``: on SQLite the store has one shared connection,
    and a read outside its lock would end a worker's transaction under its feet.
    """

    def __init__(self, store: SqlStore) -> None:
        self.store = store

    async def messages(self, prefix: str) -> list[RunMessage]:
        """Every message whose id starts with ``prefix``."""
        query = select(
            messages.c.id,
            messages.c.country,
            messages.c.state,
            messages.c.provider,
            messages.c.created_at,
        ).where(messages.c.id.startswith(prefix, autoescape=True))
        async with self.store.reading() as conn:
            rows = (await conn.execute(query)).all()
        return [RunMessage(r[0], r[1], r[2], r[3], _utc(r[4])) for r in rows]

    async def attempts(self, prefix: str) -> list[RunAttempt]:
        """Every attempt of those messages, in the order they were made."""
        query = (
            select(
                attempts.c.message_id,
                attempts.c.number,
                attempts.c.provider,
                attempts.c.outcome,
                attempts.c.started_at,
                attempts.c.finished_at,
                attempts.c.estimated_cost,
                attempts.c.actual_cost,
            )
            .where(attempts.c.message_id.startswith(prefix, autoescape=True))
            .order_by(attempts.c.started_at, attempts.c.key)
        )
        async with self.store.reading() as conn:
            rows = (await conn.execute(query)).all()
        return [
            RunAttempt(r[0], r[1], r[2], r[3], _utc(r[4]), _utc(r[5]) if r[5] else None, r[6], r[7])
            for r in rows
        ]


def _utc(value: datetime) -> datetime:
    # SQLite hands back naive datetimes; the store writes UTC.
    return value if value.tzinfo is not None else value.replace(tzinfo=UTC)
