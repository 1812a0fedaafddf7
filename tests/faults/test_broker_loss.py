"""A broker connection loss while sends are in flight loses nothing (issue 7, item 5).

After the connection drops, the robust channel consumes again and the broker redelivers
every unacked message, while the tasks that hold the originals (whose deliveries died
with the old channel) are still sending. The redelivered copy is the only live handle
on the message: it must not be acked before the original's outcome is recorded.
"""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest

from tests.conftest import eventually
from tests.fakes.faulty import FaultyTwilio
from tests.faults.chaos import ledger, publish, requests, settle, twilio_worker_settings
from tests.integration.process import WorkerProcess
from tests.private_broker import PrivateBroker

pytestmark = pytest.mark.faults

COUNT = 20


async def _held_or_gone(broker: PrivateBroker, worker: WorkerProcess) -> bool:
    # The redelivered copies reached the worker: either held (logged, one per copy) or
    # acked (sms.send empty, nothing unacked).
    if worker.log_count("waiting_for_in_flight_copy") >= COUNT:
        return True
    return (await broker.queue_depths()).get("sms.send") == (0, 0)


@pytest.mark.parametrize("then", ["killed", "finishes"])
async def test_redelivered_copy_of_an_in_flight_send_is_not_acked_early(
    private_broker: PrivateBroker,
    provider: FaultyTwilio,
    tmp_path: Path,
    sqlite_url: str,
    then: str,
) -> None:
    """A broker restart mid-send: the redelivered copies wait for their originals, so a kill right after loses nothing."""
    url = private_broker.url
    reqs = requests(f"loss-{uuid.uuid4().hex[:6]}", COUNT)
    settings = twilio_worker_settings(provider, prefetch=COUNT)
    # Held sends must outlast the restart: a read timeout is another defect (item 12).
    settings["providers"]["twilio"]["timeout"] = 120
    worker = WorkerProcess(tmp_path, url, sqlite_url, settings=settings)
    async with ledger(url) as book:
        provider.hold()
        worker.start()
        try:
            await publish(url, list(reqs.values()))
            await eventually(lambda: provider.waiting == COUNT, seconds=60)
            await private_broker.restart()
            await eventually(lambda: _held_or_gone(private_broker, worker), seconds=60)
            if then == "killed":
                worker.kill()
                provider.release()
                worker.start()
            else:
                provider.release()
            verdict = await settle(sqlite_url, list(reqs), book, provider, private_broker)
        finally:
            provider.release()
            worker.stop()
    verdict.assert_clean()
    if then == "finishes":
        assert set(verdict.sends.values()) == {1}, "an original that finished was sent again"
