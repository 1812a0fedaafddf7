"""One provider considered for one message, with everything that decides its place."""

from __future__ import annotations

from dataclasses import dataclass, field
from decimal import Decimal

from smsrelay.economics.prices import Price
from smsrelay.encoding import Encoded
from smsrelay.models import SendRequest
from smsrelay.routing.views import BREAKER_CLOSED, LimitState


@dataclass(slots=True)
class Candidate:
    """A provider for one message: what it would be sent as, cost, health and limits.

    ``request`` is what this provider is handed (a smart-encoded copy when its encoding
    setting says so); ``encoded`` its encoding and parts before and after. ``reason``
    says why the candidate has its place; ``excluded`` why it is not tried at all.

    Built afresh for each plan, and only the strategy and the planner set ``reason``
    and ``excluded`` (in place: a copy per candidate per message costs the hot path).
    """

    provider: str
    index: int
    request: SendRequest
    encoded: Encoded
    price: Price | None = None
    delivery_rate: float | None = None
    samples: int = 0
    breaker: str = BREAKER_CLOSED
    limits: LimitState = field(default_factory=LimitState)
    reason: str = ""
    excluded: str | None = None

    @property
    def parts(self) -> int:
        """Parts this provider would bill: the body as it would be sent."""
        return self.encoded.sent.count

    @property
    def encoding(self) -> str:
        """``gsm7`` or ``ucs2``, as it would be sent."""
        return self.encoded.sent.encoding.value

    @property
    def estimated_cost(self) -> Decimal | None:
        """Parts x price per part; None without a price."""
        return self.price.price * self.parts if self.price is not None else None

    @property
    def currency(self) -> str | None:
        """The price's currency; None without a price."""
        return self.price.currency if self.price is not None else None


def placed(
    candidate: Candidate, *, reason: str | None = None, excluded: str | None = None
) -> Candidate:
    """``candidate`` with its ``reason`` (or ``excluded``) set; the same object."""
    if reason is not None:
        candidate.reason = reason
    if excluded is not None:
        candidate.excluded = excluded
    return candidate
