"""The limits' metrics; labels are bounded by the configuration (providers, countries)."""

from __future__ import annotations

from collections.abc import Callable
from decimal import Decimal
from typing import TYPE_CHECKING

from prometheus_client import CollectorRegistry, Counter

from smsrelay.logging import get_logger

if TYPE_CHECKING:
    from smsrelay.limits.caps import Cap

__all__ = ["LimitMetrics"]

log = get_logger(__name__)


class LimitMetrics:
    """Rate-limit waits, spend caps reached, and fallbacks to the local limits."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.waits = Counter(
            "smsrelay_rate_limit_waits",
            "Sends that met a rate limit: waited for a token, or refused after waiting",
            ["provider", "result"],
            registry=registry,
        )
        self.caps_reached = Counter(
            "smsrelay_spend_cap_reached",
            "Candidates refused because a spend cap was reached",
            ["scope", "name", "period"],
            registry=registry,
        )
        self.fallbacks = Counter(
            "smsrelay_limits_fallback",
            "Times a shared limit used its local form because Redis failed",
            ["limit"],
            registry=registry,
        )
        self._warned: set[Cap] = set()
        # Told once per cap and period when a cap is first reached (the worker sends an
        # alert on sms.alerts); the limits know nothing of where alerts go.
        self.on_cap_reached: Callable[[Cap, Decimal | None], None] | None = None

    def waited(self, key: str, granted: bool) -> None:
        """Count one send that met the limit of ``key`` (labelled by its provider)."""
        self.waits.labels(key.partition("/")[0], "waited" if granted else "refused").inc()

    def refused(self, cap: Cap, spent: Decimal | None = None) -> None:
        """Count one refusal by a spend cap; warn (and alert) once per cap and period."""
        self.caps_reached.labels(cap.scope, cap.name, cap.period).inc()
        if cap not in self._warned:
            self._warned = {c for c in self._warned if c.period_id == cap.period_id} | {cap}
            log.warning("spend_cap_reached", cap=cap.label, period=cap.period_id)
            if self.on_cap_reached is not None:
                self.on_cap_reached(cap, spent)
