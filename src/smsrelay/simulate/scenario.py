"""A market scenario: traffic over countries, providers' prices and behaviour, timed events.

Read from a YAML file (``smsrelay simulate SCENARIO.yaml``), which is outside input: it
is bounded in size, validated whole, and every problem is one ``ScenarioError`` naming
the entry (``providers.cheap.countries.GB.price``). Times are *simulated* seconds;
``time_scale`` says how many pass per wall-clock second (see ``scaled``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import phonenumbers
import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from smsrelay.errors import ScenarioError
from smsrelay.guard.settings import GuardSettings
from smsrelay.health.settings import HealthSettings
from smsrelay.models import Kind
from smsrelay.providers.simulator import Behaviour
from smsrelay.routing.table import StrategyName

__all__ = [
    "Attack",
    "Event",
    "ProviderSpec",
    "PumpedPrefix",
    "RouteSpec",
    "Scenario",
    "Traffic",
    "load_scenario",
]

MAX_FILE_BYTES = 1024 * 1024
MAX_MESSAGES = 200_000
# Health settings that are durations: divided by time_scale along with everything else.
HEALTH_TIMES = frozenset(
    {
        "seconds",
        "bucket_seconds",
        "cool_down",
        "delivery_window",
        "baseline_seconds",
        "delivery_cool_down",
        "receipt_poll_interval",
        "receipt_deadline",
        "report_interval",
        # alerts: its recent window, cool-down and latency floor
        "window",
        "min_latency",
    }
)
# Guard settings that are durations (``guard.window``, ``guard.number.window``, the
# conversion rule's grace and cool-downs): scaled like health's. The guard's clock is the
# wall clock, so an hour's window must pass in an hour / time_scale.
GUARD_TIMES = frozenset({"window", "bucket", "grace", "cooldown", "max_cooldown", "memory"})
_REGIONS = frozenset(phonenumbers.SUPPORTED_REGIONS)


def _check_country(code: str, where: str) -> None:
    if code not in _REGIONS:
        raise ValueError(
            f"{where}.{code[:8]}: {code[:8]!r} is not an ISO 3166 country code like GB"
        )


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Traffic(_Strict):
    """Messages to one country: ``rate`` per simulated second, all with one body."""

    rate: float = Field(gt=0, le=1000)
    body: str = Field(
        default="Your example.com code is 482913. It expires in 10 minutes.",
        min_length=1,
        max_length=1600,
    )
    kind: Kind = Kind.TRANSACTIONAL
    # Distinct numbers drawn for the country, and how many of their last digits vary: the
    # guard's prefix is a number without its last ``guard.prefix_digits`` digits, so
    # ``spread`` above them spreads the traffic over many prefixes.
    numbers: int = Field(default=200, ge=1, le=20_000)
    spread: int = Field(default=4, ge=1, le=8)
    # ``kind: otp`` only: the share of delivered codes that are used; the runner reports
    # each as conversion feedback (what the pumping guard learns from).
    conversion: float | None = Field(default=None, ge=0, le=1)

    @model_validator(mode="after")
    def _check(self) -> Traffic:
        if self.conversion is not None and self.kind is not Kind.OTP:
            raise ValueError("conversion: only kind: otp traffic converts (set kind: otp)")
        return self


class PumpedPrefix(_Strict):
    """A premium-rate prefix an attacker pumps: bursts of ``burst`` OTPs to random numbers
    under ``prefix`` every ``pause`` simulated seconds (``burst: 1``: a steady trickle)."""

    prefix: str = Field(pattern=r"^\+[1-9][0-9]{2,12}$")
    country: str
    burst: int = Field(default=40, ge=1, le=10_000)
    pause: float = Field(default=60.0, gt=0)
    # Seconds a burst takes (its OTPs spread evenly over them).
    burst_seconds: float = Field(default=5.0, ge=0)


class Attack(_Strict):
    """SMS pumping mixed into the traffic from ``start`` to ``end`` (simulated seconds)."""

    start: float = Field(default=0.0, ge=0)
    end: float | None = Field(default=None, gt=0)
    # The share of pumped codes that are "used" (reported as conversions): about none.
    conversion: float = Field(default=0.0, ge=0, le=1)
    prefixes: list[PumpedPrefix] = Field(min_length=1, max_length=20)


class ProviderSpec(_Strict):
    """One simulated provider: its answer latency (wall ms) and its offer per country."""

    latency_ms: float = Field(default=20.0, ge=0, le=10_000)
    countries: dict[str, Behaviour] = Field(min_length=1, max_length=60)

    @model_validator(mode="after")
    def _check(self) -> ProviderSpec:
        for country, offer in self.countries.items():
            _check_country(country, "countries")
            if offer.price is None:
                raise ValueError(f"countries.{country}: needs a price (per part)")
        return self


class RouteSpec(_Strict):
    """The route every destination takes: a strategy over the providers (all by default)."""

    strategy: StrategyName = "cost_per_delivered"
    providers: list[str] | None = None
    exploration: float = Field(default=0.05, ge=0, le=0.5)
    prior_rate: float = Field(default=0.9, gt=0, le=1)
    prior_samples: int = Field(default=20, ge=0, le=100_000)


class Event(_Strict):
    """At ``at`` simulated seconds, ``provider``'s behaviour in ``country`` changes by ``set``."""

    at: float = Field(ge=0)
    provider: str
    country: str
    set: dict[str, Any] = Field(min_length=1)
    label: str | None = Field(default=None, max_length=120)

    @property
    def title(self) -> str:
        """The label, or what changes."""
        if self.label:
            return self.label
        changes = ", ".join(f"{k}={v}" for k, v in self.set.items())
        return f"{self.provider} {self.country}: {changes}"


class Scenario(_Strict):
    """A whole scenario file; see the README section on ``smsrelay simulate``."""

    name: str = Field(pattern=r"^[A-Za-z0-9_.-]{1,64}$")
    description: str = Field(default="", max_length=2000)
    duration: float = Field(gt=0, le=86_400)
    time_scale: float = Field(default=1.0, ge=1, le=1000)
    seed: int = 1
    currency: str = Field(default="USD", pattern=r"^[A-Z]{3}$")
    # Simulated seconds per point of the time series, and the trailing window over which
    # "traffic has moved away" is judged after an event.
    bucket: float = Field(default=15.0, gt=0)
    move_window: float = Field(default=10.0, gt=0)
    traffic: dict[str, Traffic] = Field(min_length=1, max_length=50)
    providers: dict[str, ProviderSpec] = Field(min_length=1, max_length=20)
    route: RouteSpec = RouteSpec()
    baseline: str | None = None
    health: dict[str, Any] = Field(default_factory=dict)
    # The worker's ``guard:`` settings (durations in simulated seconds, scaled).
    guard: dict[str, Any] = Field(default_factory=dict)
    attack: Attack | None = None
    events: list[Event] = Field(default_factory=list, max_length=200)

    @model_validator(mode="after")
    def _check(self) -> Scenario:
        for country in self.traffic:
            _check_country(country, "traffic")
        for name in self.providers:
            if not name.replace("-", "").replace("_", "").isalnum() or len(name) > 32:
                raise ValueError(f"providers.{name[:40]}: a name is letters, digits, - and _")
        self._check_route()
        self._check_coverage()
        self._check_events()
        total = sum(t.rate for t in self.traffic.values()) * self.duration
        if self.attack is not None:
            total += sum(p.burst * self.duration / p.pause for p in self.attack.prefixes)
        if total > MAX_MESSAGES:
            raise ValueError(f"traffic: {total:.0f} messages in all; at most {MAX_MESSAGES}")
        if self.bucket > self.duration:
            raise ValueError("bucket: must not exceed duration")
        self.health_settings()
        self._check_attack(self.guard_settings())
        return self

    def _check_attack(self, guard: GuardSettings) -> None:
        if self.attack is None:
            return
        if guard.mode == "off":
            raise ValueError("attack: needs guard.mode monitor or enforce (the guard is off)")
        end = self.attack.end if self.attack.end is not None else self.duration
        if not self.attack.start < end <= self.duration:
            raise ValueError("attack: start < end <= duration")
        for n, pumped in enumerate(self.attack.prefixes):
            where = f"attack.prefixes.{n}"
            _check_country(pumped.country, where)
            if not any(pumped.country in self.providers[p].countries for p in self.route_providers):
                raise ValueError(f"{where}.country: no provider in the route offers it")
            if len(pumped.prefix) < 1 + guard.prefix_digits:
                raise ValueError(f"{where}.prefix: shorter than guard.prefix_digits")

    def _check_route(self) -> None:
        unknown = [p for p in self.route.providers or [] if p not in self.providers]
        if unknown:
            raise ValueError(f"route.providers: unknown provider {unknown[0]!r}")

    def _check_coverage(self) -> None:
        for country in self.traffic:
            if not any(country in self.providers[p].countries for p in self.route_providers):
                raise ValueError(f"traffic.{country}: no provider in the route offers {country}")
        if self.baseline is not None:
            spec = self.providers.get(self.baseline)
            if spec is None:
                raise ValueError(f"baseline: unknown provider {self.baseline!r}")
            missing = sorted(set(self.traffic) - set(spec.countries))
            if missing:
                raise ValueError(f"baseline: {self.baseline} does not offer {', '.join(missing)}")
        elif self.baseline_provider is None:
            raise ValueError("baseline: no provider offers every traffic country; name one")

    def _check_events(self) -> None:
        for n, event in enumerate(self.events):
            where = f"events.{n}"
            spec = self.providers.get(event.provider)
            if spec is None:
                raise ValueError(f"{where}.provider: unknown provider {event.provider!r}")
            if event.country not in spec.countries:
                raise ValueError(
                    f"{where}.country: {event.provider} does not offer {event.country}"
                )
            if event.at > self.duration:
                raise ValueError(
                    f"{where}.at: {event.at:g} s is after the end ({self.duration:g} s)"
                )
            try:
                Behaviour.model_validate(
                    {**spec.countries[event.country].model_dump(), **event.set}
                )
            except ValidationError as exc:
                first = exc.errors()[0]
                key = ".".join(str(p) for p in first["loc"])
                raise ValueError(f"{where}.set.{key}: {first['msg']}") from None
        if [e.at for e in self.events] != sorted(e.at for e in self.events):
            raise ValueError("events: must be in time order")

    @property
    def route_providers(self) -> list[str]:
        """The route's providers: as listed, or every provider in file order."""
        return list(self.route.providers or self.providers)

    @property
    def baseline_provider(self) -> str | None:
        """``baseline``, else the first provider that offers every traffic country."""
        if self.baseline is not None:
            return self.baseline
        for name, spec in self.providers.items():
            if set(self.traffic) <= set(spec.countries):
                return name
        return None

    def health_settings(self) -> HealthSettings:
        """``health`` over the defaults, every duration divided by ``time_scale``."""
        merged = HealthSettings().model_dump()
        for key, values in self.health.items():
            if key not in merged:
                raise ValueError(f"health.{key}: not a health setting ({', '.join(merged)})")
            if isinstance(merged[key], dict) and isinstance(values, dict):
                merged[key].update(values)
            else:
                merged[key] = values
        _scale_times(merged, self.time_scale)
        try:
            return HealthSettings.model_validate(merged)
        except ValidationError as exc:
            first = exc.errors()[0]
            key = ".".join(str(p) for p in first["loc"])
            raise ValueError(f"health.{key}: {first['msg']}") from None

    def guard_settings(self) -> GuardSettings:
        """``guard`` over the defaults, every duration divided by ``time_scale``."""
        merged = GuardSettings().model_dump(mode="json")
        for key, values in self.guard.items():
            if key not in merged:
                raise ValueError(f"guard.{key}: not a guard setting ({', '.join(merged)})")
            if isinstance(merged[key], dict) and isinstance(values, dict):
                merged[key].update(values)
            else:
                merged[key] = values
        _scale_times(merged, self.time_scale, GUARD_TIMES)
        try:
            return GuardSettings.model_validate(merged)
        except ValidationError as exc:
            first = exc.errors()[0]
            key = ".".join(str(p) for p in first["loc"])
            raise ValueError(f"guard.{key}: {first['msg']}") from None


def _scale_times(
    values: dict[str, Any], factor: float, times: frozenset[str] = HEALTH_TIMES
) -> None:
    for key, value in values.items():
        if isinstance(value, dict):
            _scale_times(value, factor, times)
        elif key in times and isinstance(value, int | float):
            values[key] = value / factor


def load_scenario(path: Path) -> Scenario:
    """The scenario in ``path``, or ``ScenarioError`` naming what is wrong."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise ScenarioError(str(path), f"cannot read it: {exc.strerror}") from None
    if len(data) > MAX_FILE_BYTES:
        raise ScenarioError(str(path), f"{len(data)} bytes; the limit is {MAX_FILE_BYTES}")
    try:
        loaded = yaml.safe_load(data)
    except yaml.YAMLError as exc:
        raise ScenarioError(str(path), f"not valid YAML: {exc}") from None
    return parse_scenario(loaded)


def parse_scenario(loaded: object) -> Scenario:
    """A scenario from its parsed YAML, or ``ScenarioError`` naming the entry."""
    if not isinstance(loaded, dict):
        raise ScenarioError("file", "must hold a mapping (name, duration, traffic, providers…)")
    try:
        return Scenario.model_validate(loaded)
    except ValidationError as exc:
        raise _scenario_error(exc) from None


def _scenario_error(exc: ValidationError) -> ScenarioError:
    """The first problem, keyed by its full path (a validator's message starts with its key)."""
    first = exc.errors()[0]
    path = [str(p) for p in first["loc"]]
    problem = str(first["msg"]).removeprefix("Value error, ")
    head, sep, rest = problem.partition(": ")
    if sep and " " not in head:
        path.append(head)
        problem = rest
    return ScenarioError(".".join(path) or "scenario", problem)
