"""Wiring: the guard from settings. Redis when ``redis_url`` is set, else in-process."""

from __future__ import annotations

from prometheus_client import CollectorRegistry

from smsrelay.guard.guard import Guard, GuardMetrics
from smsrelay.guard.redis_state import RedisGuardState
from smsrelay.guard.settings import GuardSettings
from smsrelay.guard.state import GuardState, LocalGuardState
from smsrelay.limits.settings import LimitSettings
from smsrelay.logging import get_logger

__all__ = ["build_guard"]

log = get_logger(__name__)


def build_guard(
    settings: GuardSettings,
    redis_url: str | None,
    limits: LimitSettings,
    registry: CollectorRegistry | None = None,
    *,
    role: str = "worker",
) -> Guard | None:
    """The guard of ``guard.mode`` (None when ``off``), its state shared when it can be."""
    if settings.mode == "off":
        return None
    metrics = GuardMetrics(registry)
    state: GuardState
    if redis_url is None:
        # Say so: each worker then counts only what it sends itself, and conversions
        # reported to the API process never reach the workers.
        log.warning(
            "guard_state_local",
            role=role,
            mode=settings.mode,
            reason="no redis_url: counters and blocks are this process's own",
        )
        state = LocalGuardState(settings)
    else:
        state = RedisGuardState.from_url(
            redis_url, settings, limits, on_fallback=metrics.fallbacks.inc
        )
    return Guard(settings, state, metrics)
