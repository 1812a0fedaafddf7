"""``RedisSpendCaps``: spend counters in Redis, shared by every worker.

One integer key per cap and period (``<prefix>spend:<period>:<scope>:<name>``, in
micro-units), raised by a Lua script that adds the amount to every cap a send counts
against at once, and gives each key a TTL past its period (3 days, 35 days). ``allows``
reads them with one MGET.

Redis unreachable: one warning per outage, ``smsrelay_limits_fallback{limit="caps"}``,
and for ``retry_seconds`` each worker allows itself ``1 / expected_workers`` of what each
cap had left when it last read it (of the whole cap if it never read it), counting its own
spending locally. What it spent meanwhile is added to Redis once Redis answers again, so
the shared totals stay right.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import UTC, datetime
from decimal import Decimal

import redis.asyncio as aioredis
from redis.exceptions import RedisError

from smsrelay.limits.caps import Cap, CapDecision, applicable, decide, micros
from smsrelay.limits.metrics import LimitMetrics
from smsrelay.limits.redis_client import connect
from smsrelay.limits.settings import LimitSettings, SpendCapSettings
from smsrelay.logging import get_logger

__all__ = ["SPEND_SCRIPT", "RedisSpendCaps"]

log = get_logger(__name__)

# KEYS: the counters. ARGV: amount, then one TTL (seconds) per key.
SPEND_SCRIPT = """
for i, key in ipairs(KEYS) do
  redis.call('INCRBY', key, ARGV[1])
  if redis.call('TTL', key) < 0 then redis.call('EXPIRE', key, ARGV[i + 1]) end
end
return 1
"""

_TTL = {"day": 3 * 86400, "month": 35 * 86400}


class RedisSpendCaps:
    """``SpendCaps`` shared through Redis; see the module docstring."""

    def __init__(
        self,
        client: aioredis.Redis,
        settings: SpendCapSettings,
        limits: LimitSettings,
        *,
        metrics: LimitMetrics | None = None,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.settings = settings
        self.limits = limits
        self._client = client
        self._script = client.register_script(SPEND_SCRIPT)
        self._metrics = metrics
        self._clock = clock
        self._monotonic = monotonic
        self._down_until = 0.0
        self._failing = False
        self._last_seen: dict[str, int] = {}
        # Spent while Redis was away, not yet added there: key -> (micro-units, TTL).
        self._local: dict[str, tuple[int, int]] = {}

    @classmethod
    def from_url(
        cls,
        url: str,
        settings: SpendCapSettings,
        limits: LimitSettings,
        metrics: LimitMetrics | None = None,
    ) -> RedisSpendCaps:
        """Caps with their own connection pool to ``url``."""
        client = connect(url, limits)
        return cls(client, settings, limits, metrics=metrics)

    @property
    def degraded(self) -> bool:
        """True while the local fallback is in use."""
        return self._monotonic() < self._down_until

    async def allows(self, provider: str, country: str, amount: Decimal) -> CapDecision:
        """See ``SpendCaps.allows``."""
        caps = list(applicable(self.settings, provider, country, self._clock()))
        if not caps:
            return CapDecision(allowed=True)
        keys = [self._key(cap) for cap in caps]
        if not self.degraded:
            try:
                await self._sync()
                values = await self._client.mget(keys)
                spent = [int(v or 0) for v in values]
                self._last_seen.update(zip(keys, spent, strict=True))
                return self._decide(caps, spent, micros(amount))
            except (RedisError, OSError) as exc:
                self._down(exc)
        return self._decide_locally(caps, keys, micros(amount))

    async def spend(self, provider: str, country: str, amount: Decimal) -> None:
        """See ``SpendCaps.spend``."""
        caps = list(applicable(self.settings, provider, country, self._clock()))
        value = micros(amount)
        if not caps or value <= 0:
            return
        keys = [self._key(cap) for cap in caps]
        if not self.degraded:
            try:
                await self._sync()
                await self._script(keys=keys, args=[value, *(_TTL[c.period] for c in caps)])
                return
            except (RedisError, OSError) as exc:
                self._down(exc)
        for cap, key in zip(caps, keys, strict=True):
            self._local[key] = (self._local.get(key, (0, 0))[0] + value, _TTL[cap.period])

    async def close(self) -> None:
        """Close the connection pool."""
        await self._client.aclose()

    def _decide(self, caps: list[Cap], spent: list[int], amount: int) -> CapDecision:
        decision, refused = decide(self.settings, caps, spent, amount)
        if refused is not None and self._metrics is not None:
            self._metrics.refused(refused)
        return decision

    def _decide_locally(self, caps: list[Cap], keys: list[str], amount: int) -> CapDecision:
        share = 1 / self.limits.expected_workers
        local = []
        for cap, key in zip(caps, keys, strict=True):
            left = max(0, cap.limit - self._last_seen.get(key, 0))
            local.append(Cap(cap.scope, cap.name, cap.period, cap.period_id, int(left * share)))
        return self._decide(local, [self._local.get(k, (0, 0))[0] for k in keys], amount)

    async def _sync(self) -> None:
        """Add what was spent during an outage to the shared counters."""
        if self._failing:
            self._failing = False
            log.info("spend_caps_shared_again")
        while self._local:
            key, (value, ttl) = next(iter(self._local.items()))
            await self._script(keys=[key], args=[value, ttl])
            del self._local[key]

    def _key(self, cap: Cap) -> str:
        return f"{self.limits.redis_prefix}spend:{cap.period_id}:{cap.scope}:{cap.name}"

    def _down(self, exc: BaseException) -> None:
        self._down_until = self._monotonic() + self.limits.retry_seconds
        if self._metrics is not None:
            self._metrics.fallbacks.labels("caps").inc()
        if self._failing:
            return
        self._failing = True
        log.warning(
            "spend_caps_fallback",
            problem=type(exc).__name__,
            share=f"1/{self.limits.expected_workers}",
            retry_in=self.limits.retry_seconds,
        )
