"""When Redis cannot be reached, limits and caps fall back to local, conservative forms,
say so once, and share again when Redis is back. Uses a private redis-server it stops."""

from __future__ import annotations

import asyncio
from decimal import Decimal

import pytest
import redis.asyncio as aioredis
from prometheus_client import CollectorRegistry

from smsrelay.limits.metrics import LimitMetrics
from smsrelay.limits.rates import RateRules
from smsrelay.limits.redis_caps import RedisSpendCaps
from smsrelay.limits.redis_rates import RedisRateLimiter
from smsrelay.limits.settings import LimitSettings, RateLimit, SpendCapSettings

from .conftest import PrivateRedis

# cap_sync_seconds=0: every call goes to Redis, so that an outage shows at once.
SETTINGS = LimitSettings(
    expected_workers=2, retry_seconds=0.2, redis_timeout=0.5, cap_sync_seconds=0
)


def fallbacks(registry: CollectorRegistry, limit: str) -> float:
    return registry.get_sample_value("smsrelay_limits_fallback_total", {"limit": limit}) or 0.0


async def retry_due(lim: RedisRateLimiter | RedisSpendCaps) -> None:
    """Wait until the limit will try Redis again (its retry_seconds are over)."""
    for _ in range(600):
        if not lim.degraded:
            return
        await asyncio.sleep(0.05)
    raise AssertionError("still degraded after 30 s")


async def test_rate_limit_falls_back_to_a_workers_share_and_recovers(
    private_redis: PrivateRedis, capsys: pytest.CaptureFixture[str]
) -> None:
    """Redis down: sends go on at limit / expected_workers, one warning; Redis back: shared again."""
    registry = CollectorRegistry()
    rules = RateRules({"p": RateLimit(per_second=10, burst=10)})
    lim = RedisRateLimiter.from_url(
        private_redis.url, rules, SETTINGS, metrics=LimitMetrics(registry)
    )
    try:
        assert await lim.acquire("p", wait=0) and lim.leases == 1
        private_redis.stop()
        lim._leases.clear()
        granted = [await lim.acquire("p", wait=0) for _ in range(10)]
        assert lim.degraded and fallbacks(registry, "rates") == 1
        assert granted == [True] * 5 + [False] * 5, "the local share: burst 10 / 2 workers"
        await retry_due(lim)
        await lim.acquire("p", wait=0)  # Redis is tried again: still down
        assert fallbacks(registry, "rates") == 2
        private_redis.start()
        await retry_due(lim)
        leases = lim.leases
        assert await lim.acquire("p", wait=1.0) and lim.leases == leases + 1
        assert not lim.degraded
        out = capsys.readouterr().out
        assert out.count("rate_limit_fallback") == 1 and out.count("rate_limit_shared_again") == 1
    finally:
        await lim.close()


async def test_caps_fall_back_to_a_share_of_what_was_left_and_add_it_back(
    private_redis: PrivateRedis,
) -> None:
    """Redis down: a worker may spend 1/expected_workers of what its cap had left; it is added to Redis after."""
    registry = CollectorRegistry()
    caps_settings = SpendCapSettings.model_validate({"providers": {"p": {"day": "1.00"}}})
    caps = RedisSpendCaps.from_url(
        private_redis.url, caps_settings, SETTINGS, metrics=LimitMetrics(registry)
    )
    try:
        await caps.spend("p", "GB", Decimal("0.50"))
        assert (await caps.allows("p", "GB", Decimal("0.01"))).spent == Decimal("0.5")
        private_redis.stop()
        # Left 0.50 when last read; this worker's half of it is 0.25.
        assert (await caps.allows("p", "GB", Decimal("0.20"))).allowed
        assert caps.degraded and fallbacks(registry, "caps") == 1
        await caps.spend("p", "GB", Decimal("0.20"))
        refused = await caps.allows("p", "GB", Decimal("0.10"))
        assert not refused.allowed and refused.limit == Decimal("0.25")
        private_redis.start()  # a fresh server: it holds nothing of before
        await retry_due(caps)
        assert (await caps.allows("p", "GB", Decimal("0.01"))).spent == Decimal("0.2")
        client = aioredis.Redis.from_url(private_redis.url)
        keys = await client.keys("smsrelay:spend:*")
        values = {await client.get(k) for k in keys}
        ttls = [await client.ttl(k) for k in keys]
        await client.aclose()
        assert values == {b"200000"} and all(0 < t <= 3 * 86400 for t in ttls)
    finally:
        await caps.close()
