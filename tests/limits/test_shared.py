"""Rate limits and spend caps shared by real worker processes through the real Redis."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from decimal import Decimal
from pathlib import Path
from typing import Any

import redis.asyncio as aioredis

from smsrelay.limits.rates import RateRules
from smsrelay.limits.redis_caps import RedisSpendCaps
from smsrelay.limits.redis_rates import RedisRateLimiter
from smsrelay.limits.settings import LimitSettings, RateLimit, SpendCapSettings

from .conftest import REDIS_URL

ROOT = Path(__file__).resolve().parents[2]


def run_workers(n: int, conf: dict[str, Any]) -> list[dict[str, Any]]:
    """Start n worker processes, release them together once all are ready, collect results."""
    procs = [
        subprocess.Popen(
            [sys.executable, "-m", "tests.limits.worker", json.dumps(conf)],
            cwd=ROOT,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        for _ in range(n)
    ]
    try:
        for p in procs:
            assert p.stdout is not None and p.stdout.readline().strip() == "ready"
        for p in procs:
            assert p.stdin is not None
            p.stdin.write("go\n")
            p.stdin.flush()
        results = []
        for p in procs:
            out, _ = p.communicate(timeout=120)
            assert p.returncode == 0
            results.append(json.loads(out.strip().splitlines()[-1]))
        return results
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()


def test_two_processes_together_stay_within_5_percent_of_the_limit(redis_prefix: str) -> None:
    """Two workers hammering one key limited to 100/s send 100/s together (±5 %), leasing in batches."""
    rate, seconds = 100, 6.0
    conf = {
        "job": "rates",
        "url": REDIS_URL,
        "prefix": redis_prefix,
        "rate": rate,
        "burst": 10,
        "lease": 0.1,
        "seconds": seconds,
        "senders": 20,
    }
    results = run_workers(2, conf)
    stamps = sorted(t for r in results for t in r["granted"])
    # Measure the steady state: skip the first second (the initial burst) and the last.
    start = stamps[0] + 1.0
    end = start + seconds - 2.0
    measured = sum(start <= t < end for t in stamps) / (end - start)
    assert abs(measured - rate) / rate <= 0.05, f"{measured:.1f}/s for a limit of {rate}/s"
    assert all(len(r["granted"]) > 0.2 * rate * seconds for r in results), "both workers send"
    sends, leases = len(stamps), sum(r["leases"] for r in results)
    assert sends / leases >= 4, f"{sends} sends took {leases} Redis round trips"


def test_a_spend_cap_stops_a_provider_across_two_processes(redis_prefix: str) -> None:
    """Two workers spending 0.01 against a 1.00 provider day cap stop at the cap together."""
    conf = {
        "job": "caps",
        "url": REDIS_URL,
        "prefix": redis_prefix,
        "amount": "0.01",
        "caps": {"providers": {"a": {"day": "1.00"}}},
    }
    results = run_workers(2, conf)
    total = sum(r["sent"] for r in results)
    # Each worker may have one send between its allows() and its spend(): at most 2 over.
    assert 100 <= total <= 102, total
    assert all(r["sent"] > 0 for r in results)
    assert all(r["other_provider_allowed"] for r in results), "another provider is not capped"


async def test_penalise_pauses_the_key_for_every_worker(
    redis_prefix: str, shared_redis: aioredis.Redis
) -> None:
    """A 429 seen by one worker (penalise) makes another refuse that key until the pause ends."""
    settings = LimitSettings(redis_prefix=redis_prefix)
    rules = RateRules({"p": RateLimit(per_second=1000)})
    one = RedisRateLimiter.from_url(REDIS_URL, rules, settings)
    two = RedisRateLimiter.from_url(REDIS_URL, rules, settings)
    try:
        assert await two.acquire("p", wait=0)
        await one.penalise("p", 30)
        two._leases.clear()  # its leased tokens were granted before the pause
        assert not await two.acquire("p", wait=0.05)
        assert await shared_redis.pttl(f"{redis_prefix}rate:{{p}}:pause") > 25_000
        assert await two.acquire("q", wait=0), "an unlimited key is not paused"
    finally:
        await one.close()
        await two.close()


async def test_concurrent_senders_in_one_worker_share_each_leased_batch(redis_prefix: str) -> None:
    """50 senders in one process at 5000/s: none refused within its wait, one Redis call per batch of 500."""
    settings = LimitSettings(redis_prefix=redis_prefix, lease_seconds=0.1)
    rules = RateRules({"p": RateLimit(per_second=5000, burst=500)})
    lim = RedisRateLimiter.from_url(REDIS_URL, rules, settings)
    results: list[bool] = []

    async def sender() -> None:
        for _ in range(100):
            results.append(await lim.acquire("p", wait=1.0))
            await asyncio.sleep(0)  # the send itself

    try:
        await asyncio.gather(*(sender() for _ in range(50)))
    finally:
        await lim.close()
    assert results.count(True) == 5000
    assert lim.leases <= 12, f"{lim.leases} Redis calls for 5000 tokens in batches of 500"


async def test_synced_caps_skip_redis_far_from_the_cap_and_stop_exactly_at_it(
    redis_prefix: str,
) -> None:
    """Far from a cap a worker reads and writes Redis about once per sync interval, not per
    send; near it every send does, so the cap still stops exactly at its limit."""
    settings = LimitSettings(redis_prefix=redis_prefix, cap_sync_seconds=0.2)
    far = SpendCapSettings.model_validate({"providers": {"a": {"day": "1000"}}})
    near = SpendCapSettings.model_validate({"providers": {"a": {"day": "0.60"}}})
    amount = Decimal("0.001")
    caps = RedisSpendCaps.from_url(REDIS_URL, far, settings)
    try:
        for _ in range(500):
            assert (await caps.allows("a", "GB", amount)).allowed
            await caps.spend("a", "GB", amount)
        assert caps.calls <= 50, f"{caps.calls} Redis calls for 500 sends far from the cap"
    finally:
        await caps.close()
    capped = RedisSpendCaps.from_url(REDIS_URL, near, settings)
    sent = 0
    try:
        while (await capped.allows("a", "GB", amount)).allowed:
            await capped.spend("a", "GB", amount)
            sent += 1
    finally:
        await capped.close()
    assert sent == 100, "0.50 spent before, 0.10 left"
