"""The actual cost a delivery report states, written to the attempt it bills.

A provider that names its charge in a receipt (Plivo's ``TotalAmount``, Infobip's and
Vonage's ``price``, Telnyx's ``cost``) fills ``attempts.actual_cost``/``actual_currency``
of the message's latest sent attempt with that provider, where the answer to the send
left them empty; a cost already there (from the answer or an earlier receipt) is kept.
So the first receipt with a cost wins and nothing is ever added up: a replayed or
repeated receipt is dropped before it gets here, and one repeated in every part's
report (Plivo's) cannot count twice. The cost is the whole message's where the provider
says so (Plivo, Infobip, Telnyx); Vonage's DLR is per part, so a multipart message
without a price in the answer gets its first reported part's price, a lower bound.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from sqlalchemy import bindparam, func, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from smsrelay.models import Receipt
from smsrelay.store.schema import attempts


def cost_rows(kept: Iterable[tuple[str, str, Receipt]]) -> list[dict[str, Any]]:
    """One row per (message, provider): the first of its kept receipts with a cost."""
    out: dict[tuple[str, str], dict[str, Any]] = {}
    for message_id, provider, receipt in kept:
        if receipt.cost is not None and (message_id, provider) not in out:
            out[(message_id, provider)] = {
                "c_message": message_id,
                "c_provider": provider,
                "c_cost": str(receipt.cost),
                "c_currency": receipt.currency,
            }
    return list(out.values())


async def record_costs(conn: AsyncConnection, rows: Sequence[dict[str, Any]]) -> None:
    """Write ``cost_rows`` to their attempts: one statement, however many rows."""
    if not rows:
        return
    latest_sent = (
        select(func.max(attempts.c.number))
        .where(
            attempts.c.message_id == bindparam("c_message"),
            attempts.c.provider == bindparam("c_provider"),
            attempts.c.outcome == "sent",
        )
        .scalar_subquery()
    )
    await conn.execute(
        update(attempts)
        .where(
            attempts.c.message_id == bindparam("c_message"),
            attempts.c.provider == bindparam("c_provider"),
            attempts.c.outcome == "sent",
            attempts.c.number == latest_sent,
            attempts.c.actual_cost.is_(None),
        )
        .values(actual_cost=bindparam("c_cost"), actual_currency=bindparam("c_currency")),
        list(rows),
    )
