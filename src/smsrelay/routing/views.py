"""What the planner reads from delivery health and from limits, as small protocols.

Health (``smsrelay.health``: windows, breakers) and limits (``smsrelay.limits``: rates,
spend caps) are built elsewhere and wired in at start (``runtime.py``). The planner
only needs a snapshot per provider and destination country; the defaults here are
neutral (no data, breaker closed, no limits), so routing works without either.
"""

from __future__ import annotations

from typing import NamedTuple, Protocol

BREAKER_CLOSED = "closed"
BREAKER_HALF_OPEN = "half_open"
BREAKER_OPEN = "open"


class HealthSnapshot(NamedTuple):
    """A provider's measured delivery to one country, and its breaker.

    ``delivery_rate`` is delivered / decided over the window, None without data;
    ``samples`` is how many outcomes it rests on; ``breaker`` is closed, half_open or open.
    """

    delivery_rate: float | None
    samples: int
    breaker: str = BREAKER_CLOSED


class HealthView(Protocol):
    """Delivery health as the planner reads it."""

    def snapshot(self, provider: str, country: str) -> HealthSnapshot:
        """The current health of ``provider`` for numbers in ``country``."""


class LimitState(NamedTuple):
    """Whether a provider is at its send rate or spend cap, and the detail in words."""

    rate_limited: bool = False
    cap_reached: bool = False
    detail: str = ""


class LimitsView(Protocol):
    """Rate limits and spend caps as the planner reads them."""

    def state(self, provider: str, country: str) -> LimitState:
        """The limits' current state for ``provider`` sending to ``country``."""


NO_DATA = HealthSnapshot(None, 0, BREAKER_CLOSED)
UNLIMITED = LimitState()


class NoHealth:
    """No measurements: every provider unknown, every breaker closed."""

    def snapshot(self, provider: str, country: str) -> HealthSnapshot:
        """No data, breaker closed."""
        return NO_DATA


class NoLimits:
    """No rate limit or spend cap is configured."""

    def state(self, provider: str, country: str) -> LimitState:
        """Nothing limited."""
        return UNLIMITED
