"""A store outage holds messages back; nothing is lost or dead-lettered."""

from __future__ import annotations

import asyncio

import asyncpg

from tests.conftest import PG_DSN, eventually, queue_depth
from tests.integration.harness import drain_dead, event_log, publish_raw, request, running_worker


def held_by_worker(amqp_url: str) -> bool:
    """The worker has taken the one message of sms.send and not settled it."""
    return queue_depth(amqp_url, "sms.send") == (0, 1)


async def _allow_connections(url: str, allowed: bool) -> None:
    name = url.rsplit("/", 1)[1]
    admin = await asyncpg.connect(f"{PG_DSN}/test")
    try:
        await admin.execute(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS {str(allowed).lower()}')
        if not allowed:
            await admin.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = $1", name
            )
    finally:
        await admin.close()


async def test_store_outage_requeues_and_sends_once_it_is_back(amqp_url: str, pg_url: str) -> None:
    """While PostgreSQL refuses connections the request waits; once it is back it is sent."""
    async with event_log(amqp_url) as events, running_worker(amqp_url, pg_url) as rt:
        await publish_raw(amqp_url, [request("warm-up")])
        await eventually(lambda: events.states("warm-up") == ["sent"])
        await _allow_connections(pg_url, False)
        try:
            await publish_raw(amqp_url, [request("during-outage")])
            # The positive signal that the outage is exercised: the worker holds the message.
            await eventually(lambda: asyncio.to_thread(held_by_worker, amqp_url))
            assert events.states("during-outage") == []
        finally:
            await _allow_connections(pg_url, True)
        await eventually(lambda: events.states("during-outage") == ["sent"], seconds=30)
        assert [r.id for r in rt.providers["simulator"].sent].count("during-outage") == 1  # type: ignore[attr-defined]
    assert await drain_dead(amqp_url) == []
