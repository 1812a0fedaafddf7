"""Price tables in the database, with history; migration 0004_prices both ways."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime
from decimal import Decimal

import pytest
from alembic import command
from sqlalchemy import inspect
from sqlalchemy.ext.asyncio import AsyncEngine

import smsrelay.store
from smsrelay.economics.prices import Price, PriceTable
from smsrelay.store import SqlStore
from smsrelay.store.migrate import alembic_config
from smsrelay.store.prices import Imported, PriceStore

JAN = datetime(2026, 1, 1, tzinfo=UTC)
NOV = datetime(2026, 11, 1, tzinfo=UTC)


@pytest.fixture
async def engine(database_url: str) -> AsyncIterator[AsyncEngine]:
    """A migrated database of the test's own (SQLite and PostgreSQL)."""
    store = SqlStore.from_url(database_url)
    await smsrelay.store.upgrade(store.engine)
    try:
        yield store.engine
    finally:
        await store.close()


def _gb(amount: str, when: datetime) -> Price:
    return Price("tw", "GB", Decimal(amount), "USD", when)


async def test_prices_keep_their_history(engine: AsyncEngine) -> None:
    """A newer price is a new row: both come back, and the table at each date picks the right one."""
    prices = PriceStore(engine)
    assert await prices.save([_gb("0.0400", JAN)], "csv") == Imported(1, 0, 0)
    assert await prices.save([_gb("0.0420", NOV)], "csv") == Imported(1, 0, 0)
    history = await prices.history("tw")
    assert history == [_gb("0.0400", JAN), _gb("0.0420", NOV)]
    assert PriceTable(history, datetime(2026, 6, 1, tzinfo=UTC)).lookup("tw", "+44", "GB") == _gb("0.0400", JAN)


async def test_same_date_again_corrects_or_is_unchanged(engine: AsyncEngine) -> None:
    """Re-importing a row is unchanged; a new price for the same date corrects it in place."""
    prices = PriceStore(engine)
    await prices.save([_gb("0.0400", JAN)], "csv")
    assert await prices.save([_gb("0.04", JAN)], "config") == Imported(0, 0, 1)
    assert await prices.save([_gb("0.0410", JAN)], "csv") == Imported(0, 1, 0)
    assert await prices.history() == [_gb("0.0410", JAN)]


async def test_prices_are_exact_decimals(engine: AsyncEngine) -> None:
    """A price with 8 decimals and 12 integer digits comes back exactly, on every backend."""
    exact = Price("tw", "+1", Decimal("123456789012.12345678"), "USD", JAN)
    await PriceStore(engine).save([exact], "csv")
    assert (await PriceStore(engine).history())[0].price == exact.price


async def test_history_filters_by_provider(engine: AsyncEngine) -> None:
    """history(provider) returns only that provider's rows."""
    other = Price("vonage", "GB", Decimal("0.03"), "EUR", JAN)
    await PriceStore(engine).save([_gb("0.04", JAN), other], "csv")
    assert await PriceStore(engine).history("vonage") == [other]


async def _migrate(engine: AsyncEngine, step: str, revision: str) -> None:
    run = command.upgrade if step == "up" else command.downgrade
    async with engine.begin() as conn:
        await conn.run_sync(lambda sync: run(alembic_config(sync), revision))


async def _tables(engine: AsyncEngine) -> set[str]:
    async with engine.connect() as conn:
        return set(await conn.run_sync(lambda sync: inspect(sync).get_table_names()))


async def test_migration_upgrades_downgrades_and_upgrades_again(engine: AsyncEngine) -> None:
    """0004_prices creates the prices table, drops it on downgrade, creates it again."""
    assert "prices" in await _tables(engine)
    await _migrate(engine, "down", "0003_encoding")
    assert "prices" not in await _tables(engine)
    await _migrate(engine, "up", "head")
    await PriceStore(engine).save([_gb("0.04", JAN)], "csv")
    assert len(await PriceStore(engine).history()) == 1
