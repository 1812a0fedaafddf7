"""Price tables in the database: import with history, read back (SQL for economics.prices)."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import insert, select, update
from sqlalchemy.engine import Row
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from smsrelay.economics.prices import Price
from smsrelay.store.schema import prices


@dataclass(frozen=True, slots=True)
class Imported:
    """What an import did: new rows, corrected rows (same date, new price), unchanged rows."""

    added: int
    changed: int
    unchanged: int


def _utc(value: datetime) -> datetime:
    # SQLite keeps wall time without the offset; everything written here is UTC.
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


class PriceStore:
    """Reads and writes the ``prices`` table on the store's engine."""

    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine

    async def save(self, rows: Iterable[Price], source: str) -> Imported:
        """Add each price; one with the same provider, destination and date corrects it."""
        new = list(rows)
        now = datetime.now(UTC)
        added: list[dict[str, object]] = []
        changed: list[tuple[int, Price]] = []
        unchanged = 0
        async with self.engine.begin() as conn:
            known = await self._known(conn, {p.provider for p in new})
            for price in new:
                key = (price.provider, price.destination, _utc(price.effective_from))
                old = known.get(key)
                if old is None:
                    added.append(_row(price, source, now))
                elif old[1:] != (price.price, price.currency):
                    changed.append((old[0], price))
                else:
                    unchanged += 1
            if added:
                await conn.execute(insert(prices), added)
            for row_key, price in changed:
                await conn.execute(
                    update(prices)
                    .where(prices.c.key == row_key)
                    .values(
                        price=str(price.price),
                        currency=price.currency,
                        source=source,
                        imported_at=now,
                    )
                )
        return Imported(len(added), len(changed), unchanged)

    async def _known(
        self, conn: AsyncConnection, providers: set[str]
    ) -> dict[tuple[str, str, datetime], tuple[int, Decimal, str]]:
        result = await conn.execute(select(prices).where(prices.c.provider.in_(providers)))
        return {
            (r.provider, r.destination, _utc(r.effective_from)): (
                r.key,
                Decimal(r.price),
                r.currency,
            )
            for r in result
        }

    async def history(self, provider: str | None = None) -> list[Price]:
        """Every price ever imported (for one provider), by provider, destination and date."""
        query = select(prices).order_by(
            prices.c.provider, prices.c.destination, prices.c.effective_from
        )
        if provider is not None:
            query = query.where(prices.c.provider == provider)
        async with self.engine.connect() as conn:
            result = await conn.execute(query)
            return [_price(r) for r in result]


def _price(r: Row[Any]) -> Price:
    return Price(r.provider, r.destination, Decimal(r.price), r.currency, _utc(r.effective_from))


def _row(price: Price, source: str, now: datetime) -> dict[str, object]:
    return {
        "provider": price.provider,
        "destination": price.destination,
        "price": str(price.price),
        "currency": price.currency,
        "effective_from": _utc(price.effective_from),
        "source": source,
        "imported_at": now,
    }
