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
    # The attack's prefix this number is under; None: legitimate traffic.
    pumped: str | None = None


def numbers(
    country: str, rng: random.Random, count: int = NUMBERS_PER_COUNTRY, spread: int = 4
) -> list[str]:
    """Up to ``count`` distinct valid mobile numbers (E.164) that phonenumbers places in
    ``country``, differing in their last ``spread`` digits; ``ScenarioError`` when it
    knows none."""
    example = phonenumbers.example_number_for_type(
        country, phonenumbers.PhoneNumberType.MOBILE
    ) or phonenumbers.example_number(country)
    if example is None:
        raise ScenarioError(f"traffic.{country}", "no example number known for this country")
    national = str(example.national_number)
    found: set[str] = set()
    for _ in range(count * 5):
        tail = "".join(rng.choice("0123456789") for _ in range(min(spread, len(national) - 2)))
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


def pumped_numbers(prefix: str, country: str, rng: random.Random, count: int) -> list[str]:
    """Up to ``count`` valid numbers of ``country`` that start with ``prefix`` (the length
    of the country's example number); ``ScenarioError`` when there are none."""
    example = phonenumbers.example_number_for_type(
        country, phonenumbers.PhoneNumberType.MOBILE
    ) or phonenumbers.example_number(country)
    free = 0
    if example is not None:
        e164 = phonenumbers.format_number(example, phonenumbers.PhoneNumberFormat.E164)
        free = len(e164) - len(prefix)
    found: set[str] = set()
    for _ in range(count * 5 if free > 0 else 0):
        candidate = prefix + "".join(rng.choice("0123456789") for _ in range(free))
        try:
            parsed = phonenumbers.parse(candidate)
        except phonenumbers.NumberParseException:
            break
        if (
            phonenumbers.is_valid_number(parsed)
            and phonenumbers.region_code_for_number(parsed) == country
        ):
            found.add(candidate)
        if len(found) >= count:
            break
    if not found:
        raise ScenarioError(
            f"attack.prefixes.{prefix}", f"no valid {country} number starts with {prefix}"
        )
    return sorted(found)


def schedule(scenario: Scenario) -> list[Arrival]:
    """Every message of the run, in time order."""
    rng = random.Random(scenario.seed)
    out: list[Arrival] = []
    for country, traffic in scenario.traffic.items():
        pool = numbers(country, rng, traffic.numbers, traffic.spread)
        t = rng.expovariate(traffic.rate)
        while t < scenario.duration:
            out.append(Arrival(t, country, rng.choice(pool)))
            t += rng.expovariate(traffic.rate)
    attack = scenario.attack
    if attack is not None:
        end = attack.end if attack.end is not None else scenario.duration
        for pumped in attack.prefixes:
            pool = pumped_numbers(pumped.prefix, pumped.country, rng, 500)
            # Prefixes start apart (within their first pause, inside the attack).
            start = attack.start + rng.uniform(0, min(pumped.pause, (end - attack.start) / 2))
            while start < end:
                step = pumped.burst_seconds / pumped.burst
                for k in range(pumped.burst):
                    t = start + k * step
                    if t < end:
                        out.append(Arrival(t, pumped.country, rng.choice(pool), pumped.prefix))
                start += pumped.pause
    return sorted(out, key=lambda a: a.t)
