"""A 20 s PostgreSQL outage under load: nothing lost, nothing sent twice (issue 7, item 7).

The test's own database refuses connections (``ALLOW_CONNECTIONS false``) and its
sessions are terminated while a worker sends 300 messages to a Twilio-format server.
Sends the provider accepted keep their outcome until the store is back; the rest wait
in the queue.
"""

from __future__ import annotations

import asyncio
import uuid
from pathlib import Path

import pytest

from tests.conftest import eventually
from tests.fakes.faulty import FaultyTwilio
from tests.faults.chaos import ledger, publish, requests, settle, twilio_worker_settings
from tests.faults.conftest import SCALE
from tests.integration.process import WorkerProcess
from tests.private_broker import PrivateBroker
from tests.store.test_batch_outage import allow_connections

pytestmark = pytest.mark.faults

COUNT = 300 * SCALE
OUTAGE = 20.0


async def test_store_outage_under_load_sends_each_message_once(
    private_broker: PrivateBroker, provider: FaultyTwilio, tmp_path: Path, pg_url: str
) -> None:
    """300 sends through a 20 s PostgreSQL outage: every one ends sent with its event, none reaches the provider twice."""
    url = private_broker.url
    reqs = requests(f"pg-{uuid.uuid4().hex[:6]}", COUNT)
    provider.latency = 0.1
    worker = WorkerProcess(
        tmp_path, url, pg_url, settings=twilio_worker_settings(provider, prefetch=50)
    )
    async with ledger(url) as book:
        worker.start()
        try:
            await publish(url, list(reqs.values()))
            await eventually(lambda: sum(provider.arrivals.values()) >= COUNT // 5, seconds=120)
            await allow_connections(pg_url, False)
            try:
                await asyncio.sleep(OUTAGE)  # the outage's length, not a wait for a result
            finally:
                await allow_connections(pg_url, True)
            verdict = await settle(pg_url, list(reqs), book, provider, private_broker)
        finally:
            worker.stop()
    verdict.assert_clean()
    twice = sorted(i for i, n in verdict.sends.items() if n > 1)
    assert not twice, f"{len(twice)} sent twice, e.g. {twice[:5]}"
    assert "store_unavailable" in worker.logs(), "the outage hit no send in flight"
