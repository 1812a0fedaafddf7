"""``RedisSpendCaps``: spend counters in Redis, shared by every worker.

One integer key per cap and period (``<prefix>spend:<period>:<scope>:<name>``, in
micro-units), raised by a Lua script that adds each key's amount at once, and gives each
key a TTL past its period (3 days, 35 days). ``allows`` reads them with one MGET.

The hot path does not pay a Redis round trip per message: a worker keeps what it read
and what it spent since, reads again once a read is ``limits.cap_sync_seconds`` old, and
adds what it spent to Redis at most that often (one script call for every key). Each
worker so sees the others' spending about two sync intervals late at most. Near a cap
that would let the workers together overshoot it, so a counter whose headroom is less
than what every worker together spends in ``NEAR_INTERVALS`` sync intervals (measured
from the counter's rise between reads), or less than ``NEAR_SHARE`` of the cap, is read
and written for every message: a cap is then overshot by the messages in flight at most.
``cap_sync_seconds: 0`` reads and writes Redis for every message. What a worker spent
and had not added yet is lost if it is killed (at most one sync interval's spending).

Past ``cap_sync_seconds`` and far from every cap, a sender decides from the old reading
while one new read runs behind it (up to ``STALE_INTERVALS`` intervals old; then, and
near a cap, the sender waits for the read).

Redis unreachable: one warning per outage, ``smsrelay_limits_fallback{limit="caps"}``,
and for ``retry_seconds`` each worker allows itself ``1 / expected_workers`` of what each
cap had left when it last read it (of the whole cap if it never read it), counting its own
spending locally. What it spent meanwhile is added to Redis once Redis answers again, so
the shared totals stay right.
"""

from __future__ import annotations

import asyncio
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

# KEYS: the counters. ARGV: for each key, its amount then its TTL (seconds).
SPEND_SCRIPT = """
for i, key in ipairs(KEYS) do
  redis.call('INCRBY', key, ARGV[2 * i - 1])
  if redis.call('TTL', key) < 0 then redis.call('EXPIRE', key, ARGV[2 * i]) end
end
return 1
"""

_TTL = {"day": 3 * 86400, "month": 35 * 86400}
NEAR_SHARE = 0.05
NEAR_INTERVALS = 4
# A reading this many sync intervals old is still used while a new one is read.
STALE_INTERVALS = 5


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
        # Each counter as last read from Redis (plus what this worker added since), and when.
        self._last_seen: dict[str, int] = {}
        self._read_at: dict[str, float] = {}
        # Each counter as Redis gave it at the last read, and how fast it rose (micro-units/s).
        self._raw: dict[str, int] = {}
        self._rate: dict[str, float] = {}
        # Spent here, not yet added to Redis (since the last sync, or during an outage):
        # key -> (micro-units, TTL).
        self._local: dict[str, tuple[int, int]] = {}
        self._synced_at = monotonic()
        self._reading = asyncio.Lock()
        self._refreshing: asyncio.Task[None] | None = None
        # (provider, country) -> (the UTC day, its caps, their keys).
        self._known: dict[tuple[str, str], tuple[tuple[int, int, int], list[Cap], list[str]]] = {}
        # Round trips to Redis: a test compares them with the sends.
        self.calls = 0

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
        caps, keys = self._applicable(provider, country)
        if not caps:
            return CapDecision(allowed=True)
        if not self.degraded:
            try:
                if self._fresh(caps, keys):
                    pass
                elif self._usable(caps, keys):
                    self._refresh(keys)  # decide now; the next sends see the new reading
                else:
                    async with self._reading:
                        if not self._fresh(caps, keys):  # another sender read them meanwhile
                            await self._read(keys)
                return self._decide(caps, self._spent(keys), micros(amount))
            except (RedisError, OSError) as exc:
                self._down(exc)
        return self._decide_locally(caps, keys, micros(amount))

    async def spend(self, provider: str, country: str, amount: Decimal) -> None:
        """See ``SpendCaps.spend``."""
        caps, keys = self._applicable(provider, country)
        value = micros(amount)
        if not caps or value <= 0:
            return
        for cap, key in zip(caps, keys, strict=True):
            self._local[key] = (self._local.get(key, (0, 0))[0] + value, _TTL[cap.period])
        if self.degraded:
            return
        due = self._monotonic() - self._synced_at >= self.limits.cap_sync_seconds
        if not due and not self._near(caps, keys):
            return
        try:
            await self._sync()
        except (RedisError, OSError) as exc:
            self._down(exc)

    async def close(self) -> None:
        """Add what was spent here to Redis (if it answers), then close the connection pool."""
        if self._refreshing is not None:
            await asyncio.gather(self._refreshing, return_exceptions=True)
        if self._local and not self.degraded:
            try:
                await self._sync()
            except (RedisError, OSError) as exc:
                log.warning(
                    "spend_caps_unsynced", problem=type(exc).__name__, keys=len(self._local)
                )
        await self._client.aclose()

    def _applicable(self, provider: str, country: str) -> tuple[list[Cap], list[str]]:
        """The caps of a send and their keys, worked out once per day (the hot path)."""
        now = self._clock().astimezone(UTC)
        day = (now.year, now.month, now.day)
        known = self._known.get((provider, country))
        if known is not None and known[0] == day:
            return known[1], known[2]
        caps = list(applicable(self.settings, provider, country, now))
        keys = [self._key(cap) for cap in caps]
        if len(self._known) >= 10_000:  # countries come from requests: bound them
            self._known.clear()
        self._known[(provider, country)] = (day, caps, keys)
        return caps, keys

    def _usable(self, caps: list[Cap], keys: list[str]) -> bool:
        """Old but not too old, and no cap near: decide from it while a new one is read.

        Senders do not wait for that read: 500 of them queueing on it would reach the
        store one by one afterwards, and its group commit would write them in smaller
        batches (more CPU per message).
        """
        sync = self.limits.cap_sync_seconds
        now = self._monotonic()
        limit = STALE_INTERVALS * sync
        if sync <= 0 or any(now - self._read_at.get(k, -limit) >= limit for k in keys):
            return False
        return not self._near(caps, keys)

    def _refresh(self, keys: list[str]) -> None:
        if self._refreshing is None or self._refreshing.done():
            self._refreshing = asyncio.create_task(self._read_behind(keys))

    async def _read_behind(self, keys: list[str]) -> None:
        try:
            async with self._reading:
                await self._read(keys)
        except (RedisError, OSError) as exc:
            self._down(exc)

    def _fresh(self, caps: list[Cap], keys: list[str]) -> bool:
        """May the counters as last read decide (not too old, no cap near)?"""
        sync = self.limits.cap_sync_seconds
        if sync <= 0:
            return False
        now = self._monotonic()
        if any(now - self._read_at.get(key, -sync) >= sync for key in keys):
            return False
        return not self._near(caps, keys)

    def _near(self, caps: list[Cap], keys: list[str]) -> bool:
        """Is a cap's headroom within reach of the workers' spending for a few intervals?

        Their rate: the counter's rise between reads, or this worker's own spending since
        it last synced times ``expected_workers``, whichever is higher (the first is not
        known before a second read).
        """
        reach = NEAR_INTERVALS * self.limits.cap_sync_seconds
        elapsed = max(self._monotonic() - self._synced_at, 0.001)
        for cap, key in zip(caps, keys, strict=True):
            local = self._local.get(key)
            mine = local[0] if local is not None else 0
            own = mine / elapsed * self.limits.expected_workers
            margin = max(cap.limit * NEAR_SHARE, max(self._rate.get(key, 0.0), own) * reach)
            if cap.limit - self._last_seen.get(key, 0) - mine <= margin:
                return True
        return False

    async def _read(self, keys: list[str]) -> None:
        if self._local and self._monotonic() - self._synced_at >= self.limits.cap_sync_seconds:
            await self._sync()
        self.calls += 1
        values = await self._client.mget(keys)
        now = self._monotonic()
        for key, value in zip(keys, values, strict=True):
            raw = int(value or 0)
            before, then = self._raw.get(key), self._read_at.get(key)
            if before is not None and then is not None and now > then:
                self._rate[key] = max(0, raw - before) / (now - then)
            self._raw[key] = self._last_seen[key] = raw
            self._read_at[key] = now
        if self._failing:
            self._failing = False
            log.info("spend_caps_shared_again")

    def _spent(self, keys: list[str]) -> list[int]:
        """Each counter: Redis's as last read, and what this worker has not added there yet."""
        return [self._last_seen.get(k, 0) + self._local.get(k, (0, 0))[0] for k in keys]

    def _decide(self, caps: list[Cap], spent: list[int], amount: int) -> CapDecision:
        decision, refused = decide(self.settings, caps, spent, amount)
        if refused is not None and self._metrics is not None:
            self._metrics.refused(refused, decision.spent)
        return decision

    def _decide_locally(self, caps: list[Cap], keys: list[str], amount: int) -> CapDecision:
        share = 1 / self.limits.expected_workers
        local = []
        for cap, key in zip(caps, keys, strict=True):
            left = max(0, cap.limit - self._last_seen.get(key, 0))
            local.append(Cap(cap.scope, cap.name, cap.period, cap.period_id, int(left * share)))
        return self._decide(local, [self._local.get(k, (0, 0))[0] for k in keys], amount)

    async def _sync(self) -> None:
        """Add what was spent here (since the last sync, or during an outage) to Redis."""
        pending, self._local = self._local, {}
        self._synced_at = self._monotonic()
        if not pending:
            return
        args: list[int] = []
        for value, ttl in pending.values():
            args += [value, ttl]
        try:
            self.calls += 1
            await self._script(keys=list(pending), args=args)
        except BaseException:
            for key, (value, ttl) in pending.items():  # counted again at the next sync
                self._local[key] = (self._local.get(key, (0, 0))[0] + value, ttl)
            raise
        for key, (value, _ttl) in pending.items():
            # Now in Redis: seen as part of the counter until it is read again.
            self._last_seen[key] = self._last_seen.get(key, 0) + value
        if self._failing:
            self._failing = False
            log.info("spend_caps_shared_again")

    def _key(self, cap: Cap) -> str:
        return f"{self.limits.redis_prefix}spend:{cap.period_id}:{cap.scope}:{cap.name}"

    def _down(self, exc: BaseException) -> None:
        self._down_until = self._monotonic() + self.limits.retry_seconds
        self._read_at.clear()
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
