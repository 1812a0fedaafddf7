"""Dedupe by id holds across worker processes when duplicates are published at once."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

from tests.cluster.cluster import Cluster
from tests.faults.chaos import TERMINAL, records, requests
from tests.integration.process import WorkerProcess

from smsrelay.client import AsyncClient

COPIES = 3
IDS = 300


async def test_concurrent_duplicates_reach_the_provider_once_across_three_workers(
    cluster: Cluster, cluster_vhost: str, pg_url: str, tmp_path: Path
) -> None:
    """Each id published 3 times at once, through 3 nodes, to 3 workers: one send, one record."""
    urls = cluster.urls(cluster_vhost)
    workers = [
        WorkerProcess(tmp_path, ",".join(urls), pg_url, latency_ms=20, name=f"w{i}")
        for i in range(3)
    ]
    for worker in workers:  # one at a time: the first migrates the database
        await asyncio.to_thread(worker.start)
    bodies = requests("d", IDS)
    try:
        clients = [AsyncClient(url) for url in urls[:COPIES]]
        for client in clients:
            await client.connect()
        try:
            for mid, body in bodies.items():
                # The copies land on different nodes and, with prefetch, different workers.
                await asyncio.gather(*(c.publish_raw(body, message_id=mid) for c in clients))
        finally:
            for client in clients:
                await client.close()
        deadline = time.monotonic() + 600
        while True:
            found = await records(pg_url)
            if all(found.get(i, ("", False))[0] in TERMINAL for i in bodies):
                break
            assert time.monotonic() < deadline, "not every id reached a terminal record"
            await asyncio.sleep(1)
        # Every copy is consumed (acked as a duplicate, or waited for) before the check.
        while any(
            ready or unacked for ready, unacked in (await cluster.depths(cluster_vhost)).values()
        ):
            assert time.monotonic() < deadline, "copies left in the queue"
            await asyncio.sleep(1)
    finally:
        for worker in workers:
            worker.stop()
    sends = workers[0].sends()  # one record file for the three
    twice = [i for i in bodies if sends[i] != 1 and not found[i][1]]
    assert not twice, f"{len(twice)} ids not sent exactly once, e.g. {twice[:5]}"
    assert set(found) == set(bodies)
