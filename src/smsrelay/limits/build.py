"""Wiring: the shared limits from settings. Redis when ``redis_url`` is set, else local."""

from __future__ import annotations

from smsrelay.limits.caps import LocalSpendCaps, SpendCaps
from smsrelay.limits.metrics import LimitMetrics
from smsrelay.limits.rates import LocalRateLimiter, RateLimiter, RateRules
from smsrelay.limits.redis_caps import RedisSpendCaps
from smsrelay.limits.redis_rates import RedisRateLimiter
from smsrelay.limits.settings import LimitSettings, RateLimit, SpendCapSettings

__all__ = ["build_rate_limiter", "build_spend_caps"]


def build_rate_limiter(
    redis_url: str | None,
    limits: dict[str, RateLimit | None],
    settings: LimitSettings,
    metrics: LimitMetrics | None = None,
) -> RateLimiter:
    """The rate limiter for ``providers.<name>.rate_limit``: shared through Redis, or local."""
    rules = RateRules(limits)
    if redis_url is None:
        return LocalRateLimiter(rules, metrics=metrics)
    return RedisRateLimiter.from_url(redis_url, rules, settings, metrics=metrics)


def build_spend_caps(
    redis_url: str | None,
    caps: SpendCapSettings,
    settings: LimitSettings,
    metrics: LimitMetrics | None = None,
) -> SpendCaps:
    """The spend caps of ``spend_caps``: shared through Redis, or local."""
    if redis_url is None:
        return LocalSpendCaps(caps, metrics=metrics)
    return RedisSpendCaps.from_url(redis_url, caps, settings, metrics=metrics)
