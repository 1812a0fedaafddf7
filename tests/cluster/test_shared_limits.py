"""Rate limits and spend caps hold across three worker processes on the cluster.

The same checks as tests/limits/test_worker_limits.py, at the scale the deployment guide
describes: three workers, each given every node of the cluster, PostgreSQL, one Redis.
"""

from __future__ import annotations

import asyncio
import uuid
from collections import Counter
from pathlib import Path

from tests.cluster.cluster import Cluster
from tests.conftest import eventually
from tests.integration.harness import publish_raw, request
from tests.limits.test_worker_limits import base_conf, records, simulator, stop, workers

NUMBERS = [f"+1415555{n:04d}" for n in range(300, 350)]


async def _publish(url: str, n: int, prefix: str) -> list[str]:
    ids = [f"{prefix}-{uuid.uuid4().hex[:8]}-{i}" for i in range(n)]
    await publish_raw(url, [request(m, to=NUMBERS[i % len(NUMBERS)]) for i, m in enumerate(ids)])
    return ids


async def test_three_workers_send_at_the_shared_rate_limit(
    cluster: Cluster, cluster_vhost: str, pg_url: str, tmp_path: Path
) -> None:
    """Three workers on one provider limited to 40/s deliver 40/s together (±5 %)."""
    rate = 40
    urls = cluster.urls(cluster_vhost)
    conf = base_conf(
        f"cluster-{uuid.uuid4().hex[:8]}:",
        providers={"sim": simulator(tmp_path / "x", latency_ms=5)},
        routes={"*": ["sim"]},
        limits={"otp_share": 0, "max_wait": 5},
    )
    conf["providers"]["sim"]["rate_limit"] = {"per_second": rate, "burst": 4}
    procs = workers(tmp_path, ",".join(urls), pg_url, 3, conf)
    try:
        for proc in procs:  # one at a time: the first migrates the database
            await asyncio.to_thread(proc.start)
        ids = await _publish(urls[1], 800, "rate")
        await eventually(lambda: len(records(tmp_path)) >= len(ids), seconds=120, interval=0.2)
        sent = records(tmp_path)
    finally:
        stop(procs)
    assert Counter(r["id"] for r in sent) == Counter(ids), "each message sent once"
    stamps = sorted(r["at"] for r in sent)
    start_at, end_at = stamps[0] + 1.0, stamps[-1] - 0.5
    measured = sum(start_at <= t < end_at for t in stamps) / (end_at - start_at)
    assert abs(measured - rate) / rate <= 0.05, f"{measured:.1f}/s for a limit of {rate}/s"
    per_worker = Counter(r["file"] for r in sent)
    assert len(per_worker) == 3, per_worker


async def test_a_spend_cap_stops_its_provider_across_three_workers(
    cluster: Cluster, cluster_vhost: str, pg_url: str, tmp_path: Path
) -> None:
    """Provider a's 1.00 day cap at 0.01 a message stops it after ~100 sends across three
    processes; b takes the rest."""
    urls = cluster.urls(cluster_vhost)
    prices = {
        name: {"currency": "USD", "destinations": {"US": price}}
        for name, price in (("a", "0.01"), ("b", "0.02"))
    }
    conf = base_conf(
        f"cluster-{uuid.uuid4().hex[:8]}:",
        providers={
            "a": simulator(tmp_path / "x", latency_ms=10),
            "b": simulator(tmp_path / "x", latency_ms=10),
        },
        routes={"*": ["a", "b"]},
        prices={"providers": prices},
        spend_caps={"currency": "USD", "providers": {"a": {"day": "1.00"}}},
    )
    conf["prefetch"] = 10
    procs = workers(tmp_path, ",".join(urls), pg_url, 3, conf)
    try:
        for proc in procs:
            await asyncio.to_thread(proc.start)
        ids = await _publish(urls[2], 400, "cap")
        await eventually(lambda: len(records(tmp_path)) >= len(ids), seconds=120, interval=0.2)
    finally:
        stop(procs)
    sent = records(tmp_path)
    assert Counter(r["id"] for r in sent) == Counter(ids), "each message sent once, by a or b"
    at_a = [r for r in sent if r["provider"] == "a"]
    # Exact near the cap: at most the sends in flight (prefetch 10 x 3 workers) over it.
    assert 95 <= len(at_a) <= 130, len(at_a)
    assert len({r["file"] for r in at_a}) == 3, "every worker spent from the one cap"
