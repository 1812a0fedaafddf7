"""The plan: one message's candidates in order, and why. Deciding and explaining in one.

``Router.plan(request)`` matches the route, builds a ``Candidate`` per provider (the body
as that provider would send it, its parts, price, estimated cost, delivery health,
breaker, limits), lets the route's strategy order them, then applies what holds for
every strategy: a provider at its spend cap is left out, an open breaker goes last.
The dispatcher walks ``Plan.providers``; ``smsrelay route explain`` and
``GET /v1/routes/explain`` print the same ``Plan``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import phonenumbers

from smsrelay.economics.prices import PriceTable
from smsrelay.encoding import Encoded, outgoing
from smsrelay.models import BodyEncoding, SendRequest
from smsrelay.routing.candidate import Candidate, placed
from smsrelay.routing.strategies import STRATEGIES
from smsrelay.routing.table import Match, RouteConfig, RouteTable
from smsrelay.routing.views import BREAKER_OPEN, HealthView, LimitsView, NoHealth, NoLimits


def country_reason(number: str, country: str) -> str:
    """Why phonenumbers places ``number`` in ``country`` (shared calling codes named)."""
    try:
        code = phonenumbers.parse(number).country_code
    except phonenumbers.NumberParseException:
        code = None
    if code is None:
        return f"{country}: the number's region"
    regions = phonenumbers.COUNTRY_CODE_TO_REGION_CODE.get(code, ())
    if len(regions) > 1:
        return (
            f"calling code +{code} is shared by {', '.join(regions)}; "
            f"this number's range is {country}'s (phonenumbers)"
        )
    return f"calling code +{code} is {country}'s"


@dataclass(frozen=True)
class Plan:
    """The candidates for one message: ``tried`` in order, then those left out."""

    number: str
    country: str
    match: Match
    candidates: list[Candidate]

    @property
    def strategy(self) -> str:
        """The route's strategy name."""
        return self.match.route.strategy

    @property
    def tried(self) -> list[Candidate]:
        """The candidates the dispatcher tries, first to last."""
        return [c for c in self.candidates if c.excluded is None]

    @property
    def providers(self) -> list[str]:
        """The provider names to try, first to last."""
        return [c.provider for c in self.tried]

    def candidate(self, provider: str) -> Candidate | None:
        """The candidate for ``provider``, tried or not."""
        return next((c for c in self.candidates if c.provider == provider), None)

    def explain(self) -> dict[str, Any]:
        """The plan as JSON-ready data (``route explain``)."""
        return {
            "to": self.number,
            "country": self.country,
            "country_reason": country_reason(self.number, self.country),
            "route": {
                "key": self.match.rule.key,
                "kind": self.match.rule.kind,
                "why": self.match.why,
                "strategy": self.strategy,
            },
            "order": self.providers,
            "candidates": [_candidate(c, place) for place, c in _places(self.candidates)],
        }


def _places(candidates: Sequence[Candidate]) -> list[tuple[int | None, Candidate]]:
    out: list[tuple[int | None, Candidate]] = []
    place = 0
    for c in candidates:
        if c.excluded is None:
            place += 1
            out.append((place, c))
        else:
            out.append((None, c))
    return out


def _candidate(c: Candidate, place: int | None) -> dict[str, Any]:
    return {
        "provider": c.provider,
        "place": place,
        "reason": c.excluded if c.excluded is not None else c.reason,
        "excluded": c.excluded is not None,
        "price": str(c.price.price) if c.price else None,
        "price_destination": c.price.destination if c.price else None,
        "currency": c.currency,
        "parts": c.parts,
        "encoding": c.encoding,
        "original_encoding": c.encoded.original.encoding.value,
        "original_parts": c.encoded.original.count,
        "estimated_cost": str(c.estimated_cost) if c.estimated_cost is not None else None,
        "delivery_rate": c.delivery_rate,
        "samples": c.samples,
        "breaker": c.breaker,
        "rate_limited": c.limits.rate_limited,
        "cap_reached": c.limits.cap_reached,
        "limits": c.limits.detail,
    }


class Router:
    """Plans each request: the matching route's candidates, ordered by its strategy.

    ``prices`` (a ``PriceTable``), ``encodings`` (provider → its ``encoding`` setting),
    ``health`` and ``limits`` are optional: without them nothing is priced, bodies go
    as written, and every provider is healthy and unlimited.
    """

    def __init__(
        self,
        routes: Mapping[str, Sequence[str] | RouteConfig],
        *,
        prices: PriceTable | None = None,
        encodings: Mapping[str, BodyEncoding] | None = None,
        health: HealthView | None = None,
        limits: LimitsView | None = None,
    ) -> None:
        self.table = RouteTable(routes)
        self.prices = prices or PriceTable([])
        # A provider without any price needs no look-up (up to 15 per provider otherwise).
        self._priced = {provider for provider, _ in self.prices.prices}
        self.encodings = dict(encodings or {})
        self.health: HealthView = health or NoHealth()
        self.limits: LimitsView = limits or NoLimits()

    def route(self, request: SendRequest) -> list[str]:
        """Providers for ``request``, most preferred first (``plan(request).providers``)."""
        return self.plan(request).providers

    def plan(self, request: SendRequest) -> Plan:
        """The plan for ``request``; see the module docstring."""
        match = self.table.match(request.to, request.country)
        encoded: dict[BodyEncoding, tuple[SendRequest, Encoded]] = {}
        candidates = []
        for index, name in enumerate(match.route.providers):
            setting = self.encodings.get(name, BodyEncoding.EXACT)
            if setting not in encoded:
                encoded[setting] = outgoing(request, setting)
            sent, enc = encoded[setting]
            health = self.health.snapshot(name, request.country)
            candidates.append(
                Candidate(
                    provider=name,
                    index=index,
                    request=sent,
                    encoded=enc,
                    price=(
                        self.prices.lookup(name, request.to, request.country)
                        if name in self._priced
                        else None
                    ),
                    delivery_rate=health.delivery_rate,
                    samples=health.samples,
                    breaker=health.breaker,
                    limits=self.limits.state(name, request.country),
                )
            )
        strategy = STRATEGIES[match.route.strategy]
        ordered = strategy.order(candidates, match.route, request.id)
        return Plan(request.to, request.country, match, _for_every_strategy(ordered))


def _for_every_strategy(ordered: list[Candidate]) -> list[Candidate]:
    """Spend caps leave a provider out; an open breaker sends it after the others."""
    tried, closed_last, excluded = [], [], []
    for c in ordered:
        if c.excluded is not None:
            excluded.append(c)
        elif c.limits.cap_reached:
            detail = f": {c.limits.detail}" if c.limits.detail else ""
            excluded.append(placed(c, excluded=f"spend cap reached{detail}"))
        elif c.breaker == BREAKER_OPEN:
            closed_last.append(placed(c, reason=f"breaker open, tried last; was: {c.reason}"))
        else:
            tried.append(c)
    return tried + closed_last + excluded
