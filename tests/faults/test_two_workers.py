"""Two workers on one PostgreSQL database, a flaky provider, one worker killed mid-stream.

Both consume ``sms.send``; the provider fails 10 % of requests (delayed retries) and
answers slowly; one worker is SIGKILLed while sending and its unacked messages move to
the other, which re-sends what was left open, flagged.
"""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest

from tests.conftest import eventually
from tests.fakes.faulty import FaultyTwilio
from tests.faults.chaos import ledger, publish, requests, settle, twilio_worker_settings
from tests.faults.conftest import SCALE
from tests.integration.process import WorkerProcess
from tests.private_broker import PrivateBroker

pytestmark = pytest.mark.faults

COUNT = 400 * SCALE


async def test_two_workers_on_postgresql_lose_nothing_and_flag_every_duplicate(
    private_broker: PrivateBroker, provider: FaultyTwilio, tmp_path: Path, pg_url: str
) -> None:
    """Two workers share the load on PostgreSQL; killing one mid-send loses nothing and leaves no unflagged duplicate."""
    url = private_broker.url
    reqs = requests(f"two-{uuid.uuid4().hex[:6]}", COUNT)
    provider.latency = 0.2
    provider.fail_ratio = 0.1
    settings = twilio_worker_settings(provider, prefetch=50)
    settings["providers"]["twilio"]["timeout"] = 120
    workers = [
        WorkerProcess(tmp_path, url, pg_url, settings=settings, name=name) for name in ("a", "b")
    ]
    async with ledger(url) as book:
        await publish(url, list(reqs.values()))
        try:
            for worker in workers:
                worker.start()
            await eventually(lambda: sum(provider.arrivals.values()) >= COUNT // 4, seconds=120)
            workers[0].kill()
            verdict = await settle(pg_url, list(reqs), book, provider, private_broker)
        finally:
            for worker in workers:
                worker.stop()
    verdict.assert_clean()
    assert max(verdict.sends.values()) > 1, "the kill landed on no send in flight"
    assert "message_sent" in workers[1].logs()
