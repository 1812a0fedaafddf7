"""Receipts committed in groups: each webhook answered and evented as if taken alone."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime

import pytest

from smsrelay.models import Receipt, ReceiptStatus, State
from smsrelay.store import SqlStore, upgrade
from smsrelay.store.schema import event_outbox
from tests.api.support import Api, MemoryPublisher, api_settings, running_api, twilio_callback
from tests.api.test_receipts import post_twilio, rows, sent, state
from tests.conftest import eventually

COUNT = 40


@pytest.fixture
async def api_on(database_url: str) -> AsyncIterator[Api]:
    """The app on a migrated SQLite or PostgreSQL store with an in-memory publisher."""
    store = SqlStore.from_url(database_url)
    await upgrade(store.engine)
    try:
        async with running_api(api_settings(database_url), store, MemoryPublisher()) as api:
            yield api
    finally:
        await store.close()


def _sid(n: int) -> str:
    return f"SM{n:032d}"


async def test_concurrent_receipts_share_transactions_and_each_gets_its_event(api_on: Api) -> None:
    """40 webhooks at once: fewer commits than webhooks, every message delivered, one event each."""
    for n in range(COUNT):
        await sent(api_on.store, f"m-{n}", _sid(n))
    calls = [twilio_callback(_sid(n)) for n in range(COUNT)]
    answers = await asyncio.gather(*(post_twilio(api_on, b, h) for b, h in calls))
    assert [a.status_code for a in answers] == [204] * COUNT
    batcher = api_on.app.state.smsrelay.batcher
    assert batcher.webhooks == COUNT and batcher.flushes < COUNT
    for n in range(COUNT):
        assert await state(api_on.store, f"m-{n}") is State.DELIVERED
    assert isinstance(api_on.publisher, MemoryPublisher)
    assert sorted(e.id for e in api_on.publisher.events) == sorted(f"m-{n}" for n in range(COUNT))
    assert {e.state for e in api_on.publisher.events} == {State.DELIVERED}

    async def outbox_empty() -> bool:
        return await rows(api_on.store, event_outbox) == 0

    await eventually(outbox_empty)


async def test_replay_within_one_batch_is_refused(api_on: Api) -> None:
    """The same signed webhook twice at once: one taken (204), the other refused as replayed."""
    await sent(api_on.store, "m-1", _sid(1))
    body, headers = twilio_callback(_sid(1))
    answers = await asyncio.gather(*(post_twilio(api_on, body, headers) for _ in range(2)))
    assert sorted(a.status_code for a in answers) == [204, 403]
    assert len(api_on.publisher.events) == 1  # type: ignore[attr-defined]


async def test_two_reports_for_one_message_in_one_batch_are_two_state_changes(api_on: Api) -> None:
    """undelivered then delivered in one flush: two events in that order, as one by one."""
    await sent(api_on.store, "m-1", _sid(1))
    await sent(api_on.store, "m-2", _sid(2))
    batcher = api_on.app.state.smsrelay.batcher
    flushes = batcher.flushes
    now = datetime.now(UTC)
    reports = [
        (_sid(2), ReceiptStatus.DELIVERED, None),
        (_sid(1), ReceiptStatus.UNDELIVERED, "30003"),
        (_sid(1), ReceiptStatus.DELIVERED, None),
    ]
    # Each accept() queues its webhook before its first await: the queue keeps this order.
    accepted = await asyncio.gather(
        *(
            batcher.accept(
                "twilio",
                f"digest-{n}",
                [
                    Receipt(
                        provider_message_id=sid,
                        status=st,
                        provider_status=st.value,
                        error_code=code,
                    )
                ],
                now,
            )
            for n, (sid, st, code) in enumerate(reports)
        )
    )
    assert batcher.flushes == flushes + 1
    events = [[p.event.state for p in a.events] for a in accepted]
    assert events == [[State.DELIVERED], [State.UNDELIVERED], [State.DELIVERED]]
    assert await state(api_on.store, "m-1") is State.DELIVERED
