"""The market's true state over (simulated) time: each provider's offer per country, per period.

A period runs from one event's time to the next; the first starts at 0 with the
scenario's offers. The runner plays these changes into the simulator providers; the
offline optimum and the baseline read them as the truth nobody inside the run knows.
"""

from __future__ import annotations

import bisect
from collections.abc import Mapping
from dataclasses import dataclass

from smsrelay.providers.simulator import Behaviour
from smsrelay.simulate.scenario import Scenario

Offers = Mapping[str, Mapping[str, Behaviour]]  # provider → country → behaviour


@dataclass(frozen=True)
class Period:
    """``[start, end)`` in simulated seconds, and every provider's offer during it."""

    start: float
    end: float
    offers: Offers

    def offers_for(self, country: str, providers: list[str]) -> dict[str, Behaviour]:
        """Each of ``providers`` that offers ``country``, with its offer."""
        return {p: self.offers[p][country] for p in providers if country in self.offers.get(p, {})}


def timeline(scenario: Scenario) -> list[Period]:
    """The periods of ``scenario``, in order; the last one ends at infinity."""
    current = {name: dict(spec.countries) for name, spec in scenario.providers.items()}
    periods: list[Period] = []
    start = 0.0
    for event in scenario.events:
        if event.at > start:
            periods.append(Period(start, event.at, _frozen(current)))
            start = event.at
        before = current[event.provider][event.country]
        current[event.provider][event.country] = Behaviour.model_validate(
            {**before.model_dump(), **event.set}
        )
    periods.append(Period(start, float("inf"), _frozen(current)))
    return periods


def period_at(periods: list[Period], t: float) -> int:
    """The index of the period holding simulated time ``t`` (before 0: the first)."""
    return max(0, bisect.bisect_right([p.start for p in periods], t) - 1)


def _frozen(current: dict[str, dict[str, Behaviour]]) -> dict[str, dict[str, Behaviour]]:
    return {name: dict(offers) for name, offers in current.items()}
