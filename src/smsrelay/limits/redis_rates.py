"""``RedisRateLimiter``: one token bucket per key in Redis, shared by every worker.

A worker does not ask Redis for each message. It leases a small batch of tokens (one
Lua script call: refill the shared bucket from Redis's own clock, grant up to ``batch``
tokens), spends them locally, and drops what it has not spent after ``lease_seconds``, so
tokens are spent at most that late and the aggregate stays within the bucket's rate. A
batch is ``per_second * lease_seconds`` tokens (at least 1, at most the burst): at
200/s and 0.1 s, one round trip per 20 messages. Tokens a lease leaves unspent go back
to the bucket with the next lease (never above its capacity): a worker well below the
limit must not drain the bucket with batches it lets expire, or workers would wait
under a limit they do not reach. The bucket holds no more than if they had never been
leased, so the rate still holds.

When the bucket is short, the script still leases a whole batch if the caller's ``wait``
covers its refill: the bucket goes below zero and the worker sleeps until it is paid for.
Each round trip so brings a batch, and workers queue first come first served. Under load
a send may wait up to one batch's refill (``lease_seconds``) longer than a per-message
limiter would make it; a caller whose ``wait`` is shorter gets a single token instead.

``penalise`` sets a pause key that the script honours: a provider's 429 slows every worker.

Redis unreachable (connection refused, timeout): the limiter logs one warning, counts
``smsrelay_limits_fallback{limit="rates"}``, and for ``retry_seconds`` uses a local bucket
at ``1 / expected_workers`` of each limit, so the workers together stay near the limit.
"""

from __future__ import annotations

import asyncio
import math
import time
from dataclasses import dataclass, field

import redis.asyncio as aioredis
from redis.exceptions import RedisError

from smsrelay.limits.metrics import LimitMetrics
from smsrelay.limits.rates import MAX_KEYS, Clock, LocalRateLimiter, RateRules
from smsrelay.limits.redis_client import connect
from smsrelay.limits.settings import LimitSettings, RateRule
from smsrelay.logging import get_logger

__all__ = ["LEASE_SCRIPT", "RedisRateLimiter"]

log = get_logger(__name__)

# KEYS: bucket hash, pause key. ARGV: per_second, capacity, batch, the caller's wait (ms),
# tokens the caller's last lease left unspent (given back, up to the capacity).
# A batch is reserved even if the bucket holds less: tokens go below zero and the caller
# waits until they are paid for, so each call leases a whole batch and workers queue
# first come first served. If a batch does not fit in the wait, one token is tried.
# Returns {granted, ms to wait first}; {0, ms} when nothing fits (ms: until one token).
# Times are Redis's (TIME): workers' clocks need not agree (scripts replicate by effect
# since Redis 5, so TIME is allowed).
LEASE_SCRIPT = """
local pause = redis.call('PTTL', KEYS[2])
if pause > 0 then return {0, pause} end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local rate = tonumber(ARGV[1])
local capacity = tonumber(ARGV[2])
local want = tonumber(ARGV[3])
local wait = tonumber(ARGV[4])
local saved = redis.call('HMGET', KEYS[1], 'tokens', 'stamp')
local tokens = tonumber(saved[1])
local stamp = tonumber(saved[2])
if tokens == nil or stamp == nil then
  tokens = capacity
  stamp = now
end
if now > stamp then tokens = math.min(capacity, tokens + (now - stamp) * rate / 1000000) end
tokens = math.min(capacity, tokens + tonumber(ARGV[5] or 0))
local granted = 0
for _, n in ipairs({want, 1}) do
  if granted == 0 and (n - tokens) * 1000 / rate <= wait then granted = n end
end
tokens = tokens - granted
redis.call('HSET', KEYS[1], 'tokens', string.format('%.6f', tokens), 'stamp', math.max(now, stamp))
redis.call('PEXPIRE', KEYS[1], math.ceil((capacity - tokens) / rate * 1000) + 1000)
if granted == 0 then return {0, math.ceil((1 - tokens) * 1000 / rate)} end
if tokens >= 0 then return {granted, 0} end
return {granted, math.ceil(-tokens * 1000 / rate)}
"""


@dataclass(slots=True)
class _Lease:
    tokens: int = 0
    starts: float = 0.0  # a batch reserved ahead is spendable from then
    expires: float = 0.0
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    unspent: int = 0  # left when a lease expired, given back with the next


class RedisRateLimiter:
    """A ``RateLimiter`` shared through Redis; see the module docstring."""

    def __init__(
        self,
        client: aioredis.Redis,
        rules: RateRules,
        settings: LimitSettings,
        *,
        metrics: LimitMetrics | None = None,
        clock: Clock = time.monotonic,
    ) -> None:
        self.rules = rules
        self.settings = settings
        self._client = client
        self._script = client.register_script(LEASE_SCRIPT)
        self._metrics = metrics
        self._clock = clock
        self._leases: dict[str, _Lease] = {}
        self._fallback = LocalRateLimiter(
            rules.scaled(1 / settings.expected_workers), metrics=metrics, clock=clock
        )
        self._down_until = 0.0
        self._failing = False
        # Round trips to Redis for tokens: a test and a benchmark compare it with sends.
        self.leases = 0

    @classmethod
    def from_url(
        cls,
        url: str,
        rules: RateRules,
        settings: LimitSettings,
        metrics: LimitMetrics | None = None,
    ) -> RedisRateLimiter:
        """A limiter with its own connection pool to ``url``."""
        client = connect(url, settings)
        return cls(client, rules, settings, metrics=metrics)

    @property
    def degraded(self) -> bool:
        """True while the local fallback is in use."""
        return self._clock() < self._down_until

    async def acquire(self, key: str, *, wait: float) -> bool:
        """See ``RateLimiter.acquire``."""
        rule = self.rules.rule(key)
        if rule is None:
            return True
        if self.degraded:
            return await self._fallback.acquire(key, wait=wait)
        lease = self._leases.get(key) or self._new_lease(key)
        if self._take(lease):
            return True  # the hot path: a leased token, nothing awaited
        deadline = self._clock() + wait
        waited = False
        try:
            async with asyncio.timeout(max(wait, 0.0) + self.settings.redis_timeout):
                while not self._take(lease):
                    pause = await self._next(key, rule, lease, wait)
                    if pause > 0 and pause > deadline - self._clock():
                        self._count(key, waited, granted=False)
                        return False
                    if pause > 0:
                        waited = True
                        await asyncio.sleep(pause)
        except TimeoutError:
            self._count(key, True, granted=False)
            return False
        except (RedisError, OSError) as exc:
            self._down(exc)
            return await self._fallback.acquire(key, wait=max(0.0, deadline - self._clock()))
        self._count(key, waited, granted=True)
        return True

    async def penalise(self, key: str, seconds: float) -> None:
        """See ``RateLimiter.penalise``: every worker pauses ``key``."""
        if self.rules.rule(key) is None or seconds <= 0:
            return
        lease = self._leases.get(key)
        if lease is not None:
            lease.tokens = 0
        await self._fallback.penalise(key, seconds)
        if self.degraded:
            return
        try:
            await self._client.set(self._pause_key(key), b"1", px=max(1, int(seconds * 1000)))
        except (RedisError, OSError) as exc:
            self._down(exc)

    async def close(self) -> None:
        """Close the connection pool."""
        await self._client.aclose()

    def _new_lease(self, key: str) -> _Lease:
        if len(self._leases) >= MAX_KEYS:
            del self._leases[next(iter(self._leases))]
        lease = self._leases[key] = _Lease()
        return lease

    def _take(self, lease: _Lease) -> bool:
        now = self._clock()
        if lease.tokens > 0 and lease.starts <= now < lease.expires:
            lease.tokens -= 1
            return True
        if now >= lease.expires and lease.tokens:
            lease.unspent += lease.tokens
            lease.tokens = 0
        return False

    async def _next(self, key: str, rule: RateRule, lease: _Lease, wait: float) -> float:
        """Seconds until a token may be there: the leased batch's start, or a new lease's.

        Senders wait for a batch reserved ahead without the lock, all together; the lock
        only makes one of them at a time ask Redis, and the others then see its batch.
        """
        async with lease.lock:
            now = self._clock()
            if lease.tokens > 0 and now < lease.expires:
                return max(0.0, lease.starts - now)  # another sender leased meanwhile
            return await self._reserve(key, rule, lease, wait)

    async def _reserve(self, key: str, rule: RateRule, lease: _Lease, wait: float) -> float:
        now = self._clock()
        keys = [self._bucket_key(key), self._pause_key(key)]
        # The caller's whole `wait`, not what is left of it: the batch serves the senders
        # queued behind this one too, whatever this one's own deadline.
        wait_ms = max(0, int(wait * 1000))
        if lease.tokens and now >= lease.expires:
            lease.unspent, lease.tokens = lease.unspent + lease.tokens, 0
        unspent = lease.unspent
        args: list[str | int] = [
            repr(rule.per_second),
            rule.capacity,
            self._batch(rule),
            wait_ms,
            unspent,
        ]
        self.leases += 1
        granted, delay_ms = (int(x) for x in await self._script(keys=keys, args=args))
        lease.unspent -= unspent
        if self._failing:
            self._failing = False
            log.info("rate_limit_shared_again")
        if granted == 0:
            return delay_ms / 1000
        # Reserved ahead: the tokens are ours once the bucket has paid for them.
        lease.tokens, lease.starts = granted, now + delay_ms / 1000
        lease.expires = lease.starts + self.settings.lease_seconds
        return delay_ms / 1000

    def _batch(self, rule: RateRule) -> int:
        return max(1, min(rule.capacity, math.ceil(rule.per_second * self.settings.lease_seconds)))

    def _bucket_key(self, key: str) -> str:
        return f"{self.settings.redis_prefix}rate:{{{key}}}:bucket"

    def _pause_key(self, key: str) -> str:
        return f"{self.settings.redis_prefix}rate:{{{key}}}:pause"

    def _count(self, key: str, waited: bool, *, granted: bool) -> None:
        if self._metrics is not None and (waited or not granted):
            self._metrics.waited(key, granted)

    def _down(self, exc: BaseException) -> None:
        self._down_until = self._clock() + self.settings.retry_seconds
        self._leases.clear()
        if self._metrics is not None:
            self._metrics.fallbacks.labels("rates").inc()
        if self._failing:
            return
        # One line per outage, not one per retry.
        self._failing = True
        log.warning(
            "rate_limit_fallback",
            problem=type(exc).__name__,
            share=f"1/{self.settings.expected_workers}",
            retry_in=self.settings.retry_seconds,
        )
