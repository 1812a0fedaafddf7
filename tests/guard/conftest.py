"""Fixtures of the guard tests: a simulated clock, guards over local or shared state."""

from __future__ import annotations

from typing import Any

from smsrelay.guard import Guard, GuardMetrics, GuardSettings, LocalGuardState
from smsrelay.guard.redis_state import RedisGuardState
from smsrelay.limits.settings import LimitSettings
from tests.limits.conftest import REDIS_URL, private_redis, redis_prefix, shared_redis

__all__ = [
    "REDIS_URL",
    "Clock",
    "local_guard",
    "private_redis",
    "redis_guard",
    "redis_prefix",
    "shared_redis",
]

START = 1_800_000_000.0


class Clock:
    """Simulated time the guard reads; tests move it on."""

    def __init__(self, now: float = START) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def settings(**data: Any) -> GuardSettings:
    """Guard settings in enforce mode (unless ``mode`` says otherwise)."""
    data.setdefault("mode", "enforce")
    return GuardSettings.model_validate(data)


def local_guard(clock: Clock, **data: Any) -> Guard:
    """A guard over in-process state."""
    s = settings(**data)
    return Guard(s, LocalGuardState(s), clock=clock)


def redis_guard(
    clock: Clock, prefix: str, url: str = REDIS_URL, redis_timeout: float = 0.5, **data: Any
) -> Guard:
    """A guard over the shared Redis (or ``url``), its keys under ``prefix``."""
    s = settings(**data)
    metrics = GuardMetrics()
    limits = LimitSettings(redis_prefix=prefix, redis_timeout=redis_timeout)
    state = RedisGuardState.from_url(url, s, limits, on_fallback=metrics.fallbacks.inc)
    return Guard(s, state, metrics, clock=clock)
