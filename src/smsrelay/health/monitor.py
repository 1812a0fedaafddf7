"""``HealthMonitor``: delivery windows and breakers fed together, built from settings.

The one object the dispatcher, the receipt rules and the planner hold: it feeds a send
outcome or a receipt to both the windows and the breakers, in the order the breakers
need (a receipt is counted before delivery is judged), so no caller can forget one.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from prometheus_client import CollectorRegistry

from smsrelay.errors import OutcomeUnknown, ProviderError, RateLimited, RecipientRejected
from smsrelay.health.breakers import BreakerStatus, CircuitBreakers
from smsrelay.health.delivery import DeliveryHealth, HealthSnapshot, SendOutcome
from smsrelay.health.settings import HealthSettings

__all__ = ["HealthMonitor", "outcome_of"]


def outcome_of(error: ProviderError | None) -> SendOutcome | None:
    """What an attempt's result means for health; None: nothing (a 429 is back-pressure).

    No error: ``SENT``. A bad recipient says nothing of the provider: ``FAILED``. An answer
    that never came: ``TIMEOUT``. Any other failure, transient or not (a 5xx, a refused
    connection, rejected credentials), is the provider's: ``TRANSIENT``.
    """
    if error is None:
        return SendOutcome.SENT
    if isinstance(error, RateLimited):
        return None
    if isinstance(error, RecipientRejected):
        return SendOutcome.FAILED
    if isinstance(error, OutcomeUnknown):
        return SendOutcome.TIMEOUT
    return SendOutcome.TRANSIENT


class HealthMonitor:
    """Delivery health and circuit breakers of one process, on one clock."""

    def __init__(
        self,
        settings: HealthSettings,
        *,
        registry: CollectorRegistry | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        w = settings.window
        self.clock = clock
        self.delivery = DeliveryHealth(
            window=w.seconds,
            bucket=w.bucket_seconds,
            prior_rate=w.prior_rate,
            prior_weight=w.prior_weight,
            max_keys=w.max_keys,
        )
        self.breakers = CircuitBreakers(
            settings.breakers, self.delivery, registry=registry, max_keys=w.max_keys
        )

    def record_send(self, provider: str, country: str, outcome: SendOutcome) -> None:
        """After each provider attempt (the dispatcher)."""
        now = self.clock()
        self.delivery.record_send(provider, country, outcome, now)
        self.breakers.record_send(provider, country, outcome, now)

    def record_receipt(
        self, provider: str, country: str, delivered: bool, latency_seconds: float | None
    ) -> None:
        """After each final receipt: delivered, or undelivered / failed."""
        now = self.clock()
        self.delivery.record_receipt(provider, country, delivered, latency_seconds, now)
        self.breakers.record_receipt(provider, country, now)

    def snapshot(self, provider: str, country: str) -> HealthSnapshot:
        """The delivery window of ``provider`` to ``country`` now (the planner)."""
        return self.delivery.snapshot(provider, country, self.clock())

    def status(self, provider: str, country: str) -> BreakerStatus:
        """The breaker of ``provider`` to ``country`` now, without side effects on probes."""
        return self.breakers.status(provider, country, self.clock())

    def allow(self, provider: str, country: str) -> bool:
        """Just before sending: may it go (takes a half-open probe slot)?"""
        return self.breakers.allow(provider, country, self.clock())
