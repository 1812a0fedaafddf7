"""Limits shared by every worker: sends per second (``rates``) and spend caps (``caps``),
each a small protocol with a local and a Redis implementation chosen at wiring time."""

from __future__ import annotations

from smsrelay.limits.caps import CapDecision, LocalSpendCaps, SpendCaps
from smsrelay.limits.rates import LocalRateLimiter, RateLimiter, RateRules, rate_key
from smsrelay.limits.settings import LimitSettings, RateLimit, RateRule, SpendCapSettings

__all__ = [
    "CapDecision",
    "LimitSettings",
    "LocalRateLimiter",
    "LocalSpendCaps",
    "RateLimit",
    "RateLimiter",
    "RateRule",
    "RateRules",
    "SpendCapSettings",
    "SpendCaps",
    "rate_key",
]
