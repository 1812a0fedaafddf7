"""The costs report's SQL: sent attempts joined with their messages, grouped and summed."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Float, case, cast, func, or_, select
from sqlalchemy.ext.asyncio import AsyncEngine

from smsrelay.economics.report import GROUPS, CostRow
from smsrelay.models import State
from smsrelay.store.schema import attempts, messages


class CostStore:
    """Reads the costs of sent messages from the store's engine."""

    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine

    async def report(self, since: datetime, by: Sequence[str] = GROUPS) -> list[CostRow]:
        """One row per group (``by``: provider, country) and currency, since ``since``.

        A message counts once, through the attempt that sent it; ``delivered`` is the
        messages whose receipts say delivered.
        """
        currency = func.coalesce(attempts.c.currency, attempts.c.actual_currency)
        keys: dict[str, Any] = {
            "provider": attempts.c.provider,
            "country": messages.c.country,
        }
        groups = [keys[name].label(name) for name in by]
        # An unnamed currency (Vonage's answer) is the account's: taken as the price's.
        same = or_(attempts.c.actual_currency.is_(None), attempts.c.actual_currency == currency)
        actual = case((same, cast(attempts.c.actual_cost, Float)), else_=None)
        delivered = case((messages.c.state == State.DELIVERED.value, 1), else_=0)
        query = (
            select(
                *groups,
                currency.label("currency"),
                func.count().label("messages"),
                func.sum(func.coalesce(attempts.c.sent_parts, messages.c.segments, 1)).label(
                    "parts"
                ),
                func.sum(delivered).label("delivered"),
                func.sum(cast(attempts.c.estimated_cost, Float)).label("estimated"),
                func.sum(actual).label("actual"),
            )
            .select_from(attempts.join(messages, attempts.c.message_id == messages.c.id))
            .where(attempts.c.outcome == "sent", attempts.c.started_at >= since.astimezone(UTC))
            .group_by(*[keys[name] for name in by], currency)
            .order_by(*[keys[name] for name in by], currency)
        )
        async with self.engine.connect() as conn:
            rows = (await conn.execute(query)).mappings().all()
        return [
            CostRow(
                provider=r.get("provider"),
                country=r.get("country"),
                currency=r["currency"],
                messages=int(r["messages"]),
                parts=int(r["parts"] or 0),
                delivered=int(r["delivered"] or 0),
                estimated_cost=_money(r["estimated"]),
                actual_cost=_money(r["actual"]),
            )
            for r in rows
        ]


def _money(value: float | None) -> float | None:
    return None if value is None else round(float(value), 8)
