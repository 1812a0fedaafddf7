"""What a message should cost: the offline optimum and the single-provider baseline.

Both are expectations over the true offers (``market.timeline``), weighted by the traffic
the run actually had per country and period, so they compare with the run's figure
message for message.

- Offline optimum: knowing every provider's true rates at every moment, send each
  message to the provider with the lowest price ÷ delivery probability; the share it
  refuses (``failure_rate``, ``throttle_rate``) goes to the next best, and so on.
- Baseline: one provider for everything (``baseline``), as a typical user has; its
  refusals are retried on it until taken, so every message costs its price once.

A provider whose receipts never come (``receipts: none``) delivers nothing anyone can
count: its delivery probability is taken as 0 here, as the store sees it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from smsrelay.providers.simulator import Behaviour
from smsrelay.simulate.market import Period


@dataclass(frozen=True)
class Expectation:
    """Expected cost and delivered messages, summed over messages."""

    cost: float = 0.0
    delivered: float = 0.0

    def __add__(self, other: Expectation) -> Expectation:
        return Expectation(self.cost + other.cost, self.delivered + other.delivered)

    def scaled(self, factor: float) -> Expectation:
        """For ``factor`` messages instead of one."""
        return Expectation(self.cost * factor, self.delivered * factor)

    @property
    def cost_per_delivered(self) -> float | None:
        """Cost ÷ delivered; None when nothing is delivered."""
        return self.cost / self.delivered if self.delivered > 0 else None


def observed_rate(offer: Behaviour) -> float:
    """The delivery probability receipts can show (0 when no receipt ever comes)."""
    return offer.delivery_rate if offer.receipts == "all" else 0.0


def best_order(offers: Mapping[str, Behaviour]) -> list[str]:
    """Providers that can deliver, by price ÷ delivery probability (ties by name)."""
    usable = [p for p, o in offers.items() if observed_rate(o) > 0 and o.price is not None]
    return sorted(usable, key=lambda p: (float(offers[p].price or 0) / observed_rate(offers[p]), p))


def optimal_message(offers: Mapping[str, Behaviour], parts: int = 1) -> Expectation:
    """One message sent the optimal way: best first, what it refuses to the next best."""
    remaining, out = 1.0, Expectation()
    for provider in best_order(offers):
        offer = offers[provider]
        taken = remaining * (1 - offer.failure_rate) * (1 - offer.throttle_rate)
        price = float(offer.price or 0) * parts
        out = out + Expectation(taken * price, taken * observed_rate(offer))
        remaining -= taken
    return out


def baseline_message(offer: Behaviour, parts: int = 1) -> Expectation:
    """One message through the single provider: its price once, its delivery probability."""
    return Expectation(float(offer.price or 0) * parts, observed_rate(offer))


@dataclass(frozen=True)
class Benchmarks:
    """The optimum and the baseline over a run's traffic."""

    optimum: Expectation
    baseline: Expectation


def benchmarks(
    periods: list[Period],
    traffic: Mapping[tuple[str, int], int],
    providers: list[str],
    baseline: str,
    parts: Mapping[str, int],
) -> Benchmarks:
    """Sum over ``traffic`` ((country, period index) → messages) of both expectations."""
    optimum, base = Expectation(), Expectation()
    for (country, index), count in traffic.items():
        offers = periods[index].offers_for(country, providers)
        n = parts.get(country, 1)
        optimum = optimum + optimal_message(offers, n).scaled(count)
        base = base + baseline_message(periods[index].offers[baseline][country], n).scaled(count)
    return Benchmarks(optimum, base)
