"""Rate limits: sends per second per provider, and optionally per provider and sender.

A limit is a token bucket: ``per_second`` tokens a second, at most ``burst`` saved up.
``RateLimiter.acquire(key, wait=…)`` answers True (send now) or False (the limit is
reached and a token would take longer than ``wait``: move to the next candidate, or
retry later). A key without a configured rule is not limited. Keys are
``rate_key(provider)`` and ``rate_key(provider, sender)``; ``RateRules.keys`` gives the
ones to acquire for a send.

A provider's 429 / throttling answer is back-pressure, not a failure: ``penalise(key,
seconds)`` pauses the key (every worker, with Redis) for the provider's retry-after.

Two implementations, chosen at wiring time (``build_rate_limiter``): ``LocalRateLimiter``
(one process) and ``RedisRateLimiter`` (``smsrelay.limits.redis_rates``: every worker
shares one bucket, leasing tokens in small batches so the hot path pays no Redis round
trip per message).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Protocol

from smsrelay.limits.metrics import LimitMetrics
from smsrelay.limits.settings import RateLimit, RateRule

__all__ = [
    "LocalRateLimiter",
    "RateLimiter",
    "RateRules",
    "TokenBucket",
    "rate_key",
]

Clock = Callable[[], float]
MAX_KEYS = 10_000


def rate_key(provider: str, sender: str | None = None) -> str:
    """The limiter key of a provider, or of one sender at a provider."""
    return provider if sender is None else f"{provider}/{sender}"


class RateLimiter(Protocol):
    """Sends per second, shared by whoever holds the same limiter (see the module docstring)."""

    async def acquire(self, key: str, *, wait: float) -> bool:
        """True: send now. False: over the limit even after waiting at most ``wait`` seconds."""
        ...

    async def penalise(self, key: str, seconds: float) -> None:
        """The provider throttled us: no token for ``key`` during the next ``seconds``."""
        ...

    async def close(self) -> None:
        """Release connections."""
        ...


class RateRules:
    """Which rule limits which key, from each provider's ``rate_limit`` setting."""

    def __init__(self, limits: Mapping[str, RateLimit | None]) -> None:
        self._limits = {name: limit for name, limit in limits.items() if limit is not None}

    def rule(self, key: str) -> RateRule | None:
        """The rule for ``key``: a provider's own, or its ``per_sender`` for ``provider/sender``."""
        provider, slash, _sender = key.partition("/")
        limit = self._limits.get(provider)
        if limit is None:
            return None
        return limit.per_sender if slash else limit

    def keys(self, provider: str, sender: str | None) -> list[str]:
        """The keys a send by ``provider`` (from ``sender``) must acquire, in order."""
        limit = self._limits.get(provider)
        if limit is None:
            return []
        if sender is None or limit.per_sender is None:
            return [rate_key(provider)]
        return [rate_key(provider), rate_key(provider, sender)]

    def scaled(self, factor: float) -> RateRules:
        """The same rules at ``factor`` times their rate and burst (a worker's fallback share)."""
        return RateRules({name: _scale(limit, factor) for name, limit in self._limits.items()})

    def providers(self) -> Iterable[str]:
        """Providers with a limit."""
        return self._limits.keys()


def _scale(limit: RateLimit, factor: float) -> RateLimit:
    sender = limit.per_sender
    return RateLimit(
        per_second=limit.per_second * factor,
        burst=max(1, int(limit.capacity * factor)),
        per_sender=None
        if sender is None
        else RateRule(
            per_second=sender.per_second * factor, burst=max(1, int(sender.capacity * factor))
        ),
    )


@dataclass(slots=True)
class TokenBucket:
    """A token bucket that hands out reservations: a token now, or at a known time."""

    rate: float
    capacity: float
    tokens: float
    stamp: float
    paused_until: float = 0.0

    @classmethod
    def full(cls, rule: RateRule, now: float) -> TokenBucket:
        """A bucket for ``rule``, full at ``now``."""
        return cls(rule.per_second, rule.capacity, rule.capacity, now)

    def reserve(self, now: float, wait: float) -> float | None:
        """Seconds until the reserved token is due (0: now), or None if beyond ``wait``."""
        start = max(now, self.paused_until)
        self.tokens = min(self.capacity, self.tokens + max(0.0, now - self.stamp) * self.rate)
        self.stamp = now
        # Tokens may go negative: each waiter holds a place in line, first come first served.
        due = max(start - now, (1.0 - self.tokens) / self.rate if self.tokens < 1 else 0.0)
        if due > wait:
            return None
        self.tokens -= 1.0
        return due

    def pause(self, now: float, seconds: float) -> None:
        """No token before ``now + seconds``; saved-up tokens are forfeit."""
        self.paused_until = max(self.paused_until, now + seconds)
        self.tokens = min(self.tokens, 0.0)
        self.stamp = now


class LocalRateLimiter:
    """A ``RateLimiter`` for one process (the embedded default, and Redis's fallback)."""

    def __init__(
        self,
        rules: RateRules,
        *,
        metrics: LimitMetrics | None = None,
        clock: Clock = time.monotonic,
    ) -> None:
        self.rules = rules
        self._metrics = metrics
        self._clock = clock
        self._buckets: dict[str, TokenBucket] = {}

    async def acquire(self, key: str, *, wait: float) -> bool:
        """See ``RateLimiter.acquire``."""
        due = self.reserve(key, wait)
        if (due is None or due > 0) and self._metrics is not None:
            self._metrics.waited(key, due is not None)
        if due is None:
            return False
        if due > 0:
            await asyncio.sleep(due)
        return True

    def reserve(self, key: str, wait: float) -> float | None:
        """A place in line for ``key``: seconds to wait (0: go), or None (refused)."""
        bucket = self._bucket(key)
        return 0.0 if bucket is None else bucket.reserve(self._clock(), wait)

    async def penalise(self, key: str, seconds: float) -> None:
        """See ``RateLimiter.penalise``."""
        bucket = self._bucket(key)
        if bucket is not None:
            bucket.pause(self._clock(), seconds)

    async def close(self) -> None:
        """Nothing to release."""

    def _bucket(self, key: str) -> TokenBucket | None:
        bucket = self._buckets.get(key)
        if bucket is None:
            rule = self.rules.rule(key)
            if rule is None:
                return None
            if len(self._buckets) >= MAX_KEYS:
                # Per-sender keys come from requests: bound them (the oldest starts afresh).
                del self._buckets[next(iter(self._buckets))]
            bucket = self._buckets[key] = TokenBucket.full(rule, self._clock())
        return bucket
