"""Route strategies: one class each, with one method that orders a route's candidates.

- ``ordered`` (the default): the route's list as written.
- ``cheapest``: by estimated cost for this message (parts x price); ties keep list order.
- ``weighted``: a share of messages per provider (70/30), picked from the message id, so
  a redelivery of the same message picks the same provider; the rest are failover.
- ``cost_per_delivered``: estimated cost / expected delivery rate. The rate is the
  measured one pulled towards ``prior_rate`` by ``prior_samples`` pseudo-outcomes
  (a provider with little data is neither trusted nor written off), and a share
  ``exploration`` of messages (picked from the id) goes first to another candidate so
  every estimate stays fresh.

Cost strategies leave out a provider with no price for the destination (its place
would be a guess) unless the route says ``unpriced: last``. Every choice that looks
random is a hash of the message id: tests and redeliveries see the same order.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from decimal import Decimal
from typing import Protocol

from smsrelay.routing.candidate import Candidate, placed
from smsrelay.routing.table import RouteConfig


class Strategy(Protocol):
    """Orders the candidates of one route for one message."""

    name: str

    def order(
        self, candidates: Sequence[Candidate], route: RouteConfig, message_id: str
    ) -> list[Candidate]:
        """Every candidate, those to try first to last, then the excluded ones.

        Sets each candidate's ``reason`` (or ``excluded``) in place.
        """


def unit(message_id: str, purpose: str) -> float:
    """A number in [0, 1) fixed by ``message_id`` (and ``purpose``): stable across workers."""
    digest = hashlib.sha256(f"{purpose}:{message_id}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


def _cost(candidate: Candidate) -> str:
    return f"{candidate.estimated_cost} {candidate.currency}"


class Ordered:
    """The route's list as written; failover walks it."""

    name = "ordered"

    def order(
        self, candidates: Sequence[Candidate], route: RouteConfig, message_id: str
    ) -> list[Candidate]:
        """The configured order."""
        return [placed(c, reason=f"position {c.index + 1} in the route") for c in candidates]


def _split_unpriced(
    candidates: Sequence[Candidate], route: RouteConfig
) -> tuple[list[Candidate], list[Candidate]]:
    """(priced, unpriced ones placed last or excluded, with their reason)."""
    priced = [c for c in candidates if c.price is not None]
    rest = []
    for c in candidates:
        if c.price is not None:
            continue
        if route.unpriced == "last":
            rest.append(placed(c, reason="no price for this destination: after priced ones"))
        else:
            rest.append(
                placed(
                    c,
                    excluded="no price for this destination (route unpriced: exclude)",
                )
            )
    return priced, rest


class Cheapest:
    """By estimated cost for this message; failover to the next cheapest."""

    name = "cheapest"

    def order(
        self, candidates: Sequence[Candidate], route: RouteConfig, message_id: str
    ) -> list[Candidate]:
        """Priced candidates by parts x price, ties in list order; then the unpriced."""
        priced, rest = _split_unpriced(candidates, route)
        ranked = sorted(priced, key=lambda c: (c.estimated_cost, c.index))
        out = [
            placed(c, reason=f"cost rank {n}: {c.parts} part(s) x {c.price.price} = {_cost(c)}")
            for n, c in enumerate(ranked, start=1)
            if c.price is not None
        ]
        return out + rest


class Weighted:
    """One provider picked by weight from the message id, then the rest in list order."""

    name = "weighted"

    def order(
        self, candidates: Sequence[Candidate], route: RouteConfig, message_id: str
    ) -> list[Candidate]:
        """The weighted pick first; the others as failover."""
        total = sum(route.weights.get(c.provider, 0) for c in candidates)
        if total <= 0:
            return Ordered().order(candidates, route, message_id)
        point = unit(message_id, "weighted") * total
        chosen = None
        for c in candidates:
            point -= route.weights.get(c.provider, 0)
            if point < 0:
                chosen = c
                break
        chosen = chosen or candidates[-1]
        share = route.weights.get(chosen.provider, 0)
        first = placed(chosen, reason=f"weighted pick ({share} of {total} shares, by message id)")
        rest = [
            placed(c, reason=f"failover (weight {route.weights.get(c.provider, 0)})")
            for c in candidates
            if c is not chosen
        ]
        return [first, *rest]


class CostPerDelivered:
    """Estimated cost / expected delivery rate, with priors and a little exploration."""

    name = "cost_per_delivered"

    def order(
        self, candidates: Sequence[Candidate], route: RouteConfig, message_id: str
    ) -> list[Candidate]:
        """Cheapest per delivered message first; an exploring message puts another first."""
        priced, rest = _split_unpriced(candidates, route)
        scored = sorted(
            ((self.score(c, route), c) for c in priced), key=lambda s: (s[0], s[1].index)
        )
        out = [
            placed(
                c,
                reason=f"cost per delivered {score:.6g} {c.currency}"
                f" ({_cost(c)} / expected rate {self.expected_rate(c, route):.3f})",
            )
            for score, c in scored
        ]
        if len(out) > 1 and unit(message_id, "explore") < route.exploration:
            pick = 1 + int(unit(message_id, "explore-which") * (len(out) - 1))
            explored = out.pop(pick)
            share = f"{route.exploration:.0%}"
            out.insert(
                0,
                placed(
                    explored,
                    reason=f"exploration ({share} of messages, by "
                    f"message id) keeps its estimate fresh; {explored.reason}",
                ),
            )
        return out + rest

    @staticmethod
    def expected_rate(candidate: Candidate, route: RouteConfig) -> float:
        """The measured rate smoothed towards the prior by ``prior_samples`` outcomes."""
        measured = candidate.delivery_rate if candidate.delivery_rate is not None else 0.0
        samples = candidate.samples if candidate.delivery_rate is not None else 0
        weight = samples + route.prior_samples
        if weight == 0:
            return route.prior_rate
        return (measured * samples + route.prior_rate * route.prior_samples) / weight

    def score(self, candidate: Candidate, route: RouteConfig) -> Decimal:
        """Expected cost of one delivered message through ``candidate``."""
        cost = candidate.estimated_cost or Decimal(0)
        rate = max(self.expected_rate(candidate, route), 1e-6)
        return cost / Decimal(repr(rate))


STRATEGIES: dict[str, Strategy] = {
    s.name: s for s in (Ordered(), Cheapest(), Weighted(), CostPerDelivered())
}
