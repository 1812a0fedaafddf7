"""The run's traffic: when each message goes out, to which country and number.

Arrivals per country are a Poisson process at the scenario's rate (in simulated time),
drawn from the scenario's seed: the same file gives the same schedule. Numbers are valid
mobile numbers of the country (phonenumbers' example number with other last digits),
so the worker's country detection places them where the scenario says.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

import phonenumbers

from smsrelay.errors import ScenarioError
from smsrelay.simulate.scenario import Scenario

NUMBERS_PER_COUNTRY = 200


@dataclass(frozen=True, slots=True)
class Arrival:
    """One message to publish at simulated time ``t``."""

    t: float
    country: str
    to: str


def numbers(country: str, rng: random.Random, count: int = NUMBERS_PER_COUNTRY) -> list[str]:
    """Up to ``count`` distinct valid mobile numbers (E.164) that phonenumbers places in
    ``country``; ``ScenarioError`` when it knows none."""
    example = phonenumbers.example_number_for_type(
        country, phonenumbers.PhoneNumberType.MOBILE
    ) or phonenumbers.example_number(country)
    if example is None:
        raise ScenarioError(f"traffic.{country}", "no example number known for this country")
    national = str(example.national_number)
    found: set[str] = set()
    for _ in range(count * 5):
        tail = "".join(rng.choice("0123456789") for _ in range(min(4, len(national) - 2)))
        candidate = phonenumbers.PhoneNumber(
            country_code=example.country_code,
            national_number=int(national[: len(national) - len(tail)] + tail),
        )
        if (
            phonenumbers.is_valid_number(candidate)
            and phonenumbers.region_code_for_number(candidate) == country
        ):
            found.add(phonenumbers.format_number(candidate, phonenumbers.PhoneNumberFormat.E164))
        if len(found) >= count:
            break
    if not found:
        raise ScenarioError(f"traffic.{country}", "cannot make valid numbers for this country")
    return sorted(found)


def schedule(scenario: Scenario) -> list[Arrival]:
    """Every message of the run, in time order."""
    rng = random.Random(scenario.seed)
    out: list[Arrival] = []
    for country, traffic in scenario.traffic.items():
        pool = numbers(country, rng)
        t = rng.expovariate(traffic.rate)
        while t < scenario.duration:
            out.append(Arrival(t, country, rng.choice(pool)))
            t += rng.expovariate(traffic.rate)
    return sorted(out, key=lambda a: a.t)
