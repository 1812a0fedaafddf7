"""Wiring: the shared limits from settings. Redis when ``redis_url`` is set, else local."""

from __future__ import annotations

from collections.abc import Mapping

from smsrelay.limits.caps import LocalSpendCaps, SpendCaps
from smsrelay.limits.gate import LimitGate, with_otp_lanes
from smsrelay.limits.metrics import LimitMetrics
from smsrelay.limits.rates import LocalRateLimiter, RateLimiter, RateRules
from smsrelay.limits.redis_caps import RedisSpendCaps
from smsrelay.limits.redis_rates import RedisRateLimiter
from smsrelay.limits.settings import LimitSettings, RateLimit, SpendCapSettings

__all__ = ["build_limit_gate", "build_rate_limiter", "build_spend_caps"]


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


def build_limit_gate(
    redis_url: str | None,
    limits: Mapping[str, RateLimit | None],
    caps: SpendCapSettings,
    settings: LimitSettings,
    metrics: LimitMetrics | None = None,
) -> LimitGate:
    """The worker's ``LimitGate``: each provider's limit split for the OTP lane, the caps.

    Without any ``rate_limit`` or cap it holds neither, and costs the hot path nothing.
    """
    lanes = with_otp_lanes(limits, settings.otp_share)
    limited = any(limit is not None for limit in lanes.values())
    limiter = build_rate_limiter(redis_url, lanes, settings, metrics) if limited else None
    spend = build_spend_caps(redis_url, caps, settings, metrics) if caps.any else None
    return LimitGate(limiter, RateRules(lanes), spend, caps, settings)
