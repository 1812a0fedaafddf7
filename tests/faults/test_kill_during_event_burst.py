"""SIGKILL during a burst of batched status events: no outcome is left without its event.

Issue 10 lets the worker publish events back to back and wait for confirms that cover
many of them; the contract stays "an outcome's event is confirmed by the broker before
its delivery is acked". A worker killed between recording outcomes and having their
events confirmed leaves those deliveries unacked: the restarted worker gets them again
(redelivered), finds the outcome recorded and publishes its event again. This test kills
a worker draining a burst with no provider latency (events go out hundreds at a time),
checks that the kill caught outcomes whose events had not gone out (the window the
contract is about), restarts the worker and requires every terminal row to have an event.
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from pathlib import Path

import pytest

from tests.conftest import eventually, queue_depth
from tests.faults.chaos import EVENTS_QUEUE, TERMINAL, Ledger, ledger, publish, records
from tests.faults.conftest import SCALE
from tests.integration.process import WorkerProcess

pytestmark = pytest.mark.faults

COUNT = 3000 * SCALE
ATTEMPTS = 3


def _bodies(prefix: str) -> list[bytes]:
    return [
        json.dumps(
            {"id": f"{prefix}-{i}", "to": f"+1415555{i % 100:04d}", "body": f"n {i}"}
        ).encode()
        for i in range(COUNT)
    ]


async def _ledger_drained(amqp_url: str) -> None:
    """Every event the broker holds was consumed by the ledger (a positive signal)."""

    async def drained() -> bool:
        ready, unacked = await asyncio.to_thread(queue_depth, amqp_url, EVENTS_QUEUE)
        return ready == 0 and unacked == 0

    await eventually(drained, seconds=60, interval=0.1)


def _without_event(found: dict[str, tuple[str, bool]], book: Ledger) -> set[str]:
    with_event = {e["id"] for e in book.events if e["state"] in TERMINAL}
    return {i for i, (state, _) in found.items() if state in TERMINAL} - with_event


async def test_kill_during_event_burst_leaves_no_outcome_without_event(
    tmp_path: Path, amqp_url: str
) -> None:
    """kill -9 mid-burst (outcomes recorded, events not yet out), restart: every terminal id has an event."""
    database_url = f"sqlite+aiosqlite:///{tmp_path}/smsrelay.db"
    worker = WorkerProcess(tmp_path, amqp_url, database_url, latency_ms=0)
    worker.config.write_text(worker.config.read_text().replace("prefetch: 50", "prefetch: 500"))
    caught: set[str] = set()
    published: list[str] = []
    async with ledger(amqp_url) as book:
        try:
            for attempt in range(ATTEMPTS):
                prefix = f"burst{attempt}-{uuid.uuid4().hex[:6]}"
                await publish(amqp_url, _bodies(prefix))
                published += [f"{prefix}-{i}" for i in range(COUNT)]
                worker.start()
                target = len(book.events) + COUNT // 5
                await eventually(lambda t=target: len(book.events) >= t, seconds=120)
                worker.kill()
                await _ledger_drained(amqp_url)
                caught = _without_event(await records(database_url), book)
                if caught:
                    break
            # The kill landed in the window: outcomes recorded whose events had not gone out.
            assert caught, f"no kill in {ATTEMPTS} landed between an outcome and its event"
            worker.start()

            async def all_done() -> bool:
                found = await records(database_url)
                settled = all(found.get(i, ("", False))[0] in TERMINAL for i in published)
                return settled and not _without_event(found, book)

            deadline = time.monotonic() + 180
            while not await all_done():
                found = await records(database_url)
                assert time.monotonic() < deadline, (
                    f"{len(_without_event(found, book))} terminal ids without an event, e.g."
                    f" {sorted(_without_event(found, book))[:5]}"
                )
                await asyncio.sleep(0.2)
        finally:
            worker.stop()
