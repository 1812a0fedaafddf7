"""The routing table: a destination → the route (providers and strategy) that serves it.

Rules are keyed by number prefix (``+4420``), by country (``GB``, from phonenumbers)
or ``*``. The longest matching prefix wins, then the country, then ``*``. Each rule is a
small class answering ``matches(destination)``: a new kind of rule is a new class.

A route is a list of provider names (tried in order: the ``ordered`` strategy) or a
mapping ``{strategy: cheapest, providers: [...], weights: {...}}`` (see ``RouteConfig``).

A country is the region phonenumbers gives the number, and some calling codes are
shared: ``+447911123456`` is Guernsey (``GG``), not ``GB``; ``+1`` is the US, Canada and
23 other territories. A calling-code prefix (``+44``, ``+1``) is what covers a whole
numbering plan. ``check_route_key`` refuses a key that can never match (``UK``, ``gb``);
``route_coverage_warnings`` says which country routes leave out territories of their
calling code.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Annotated, Literal, Protocol

import phonenumbers
from pydantic import BaseModel, ConfigDict, Discriminator, Field, Tag, model_validator

from smsrelay.errors import ConfigError

DEFAULT_KEY = "*"
# Calling codes never start with 0; E.164 numbers have at most 15 digits.
_PREFIX = re.compile(r"\+[1-9][0-9]{0,14}")

StrategyName = Literal["ordered", "cheapest", "weighted", "cost_per_delivered"]


class RouteConfig(BaseModel):
    """A route in mapping form: its providers and how they are ordered for each message.

    ``unpriced``: what cost strategies do with a provider that has no price for the
    destination (``exclude``: not a candidate; ``last``: tried after the priced ones).
    ``weights``: the ``weighted`` split, provider → share (70/30); a provider without a
    weight is failover only. ``exploration``, ``prior_rate`` and ``prior_samples`` tune
    ``cost_per_delivered`` (see ``smsrelay.routing.strategies``). ``on_rate_limit``: a
    provider at its rate limit is waited for (``wait``: at most ``limits.max_wait``, then
    the message is sent later) or passed over for the next candidate at once (``next``).
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    strategy: StrategyName = "ordered"
    providers: list[str] = Field(max_length=64)
    weights: dict[str, int] = Field(default_factory=dict)
    unpriced: Literal["exclude", "last"] = "exclude"
    exploration: float = Field(default=0.05, ge=0, le=0.5)
    prior_rate: float = Field(default=0.9, gt=0, le=1)
    prior_samples: int = Field(default=20, ge=0, le=100_000)
    # OTP on this route: seconds after the send without a delivered receipt before the
    # body goes once more through the next provider (a request's own resend_after wins).
    resend_after: int | None = Field(default=None, ge=1, le=3600)
    # A provider at its rate limit: wait up to limits.max_wait for a token, else send
    # later ("wait"); or go on to the next candidate at once ("next").
    on_rate_limit: Literal["wait", "next"] = "wait"

    @model_validator(mode="after")
    def _check(self) -> RouteConfig:
        unknown = sorted(set(self.weights) - set(self.providers))
        if unknown:
            raise ValueError(f"weights name providers not in the route: {', '.join(unknown)}")
        if any(w < 0 for w in self.weights.values()):
            raise ValueError("weights are shares of 0 or more")
        if self.strategy == "weighted" and sum(self.weights.values()) <= 0:
            raise ValueError("the weighted strategy needs weights, e.g. {a: 70, b: 30}")
        return self


def _route_form(value: object) -> str:
    return "mapping" if isinstance(value, dict | RouteConfig) else "list"


# A list (ordered) or a mapping: the tag picks which, so an error names the right form.
RouteSpec = Annotated[
    Annotated[list[str], Tag("list")] | Annotated[RouteConfig, Tag("mapping")],
    Discriminator(_route_form),
]


def route_config(spec: Sequence[str] | RouteConfig) -> RouteConfig:
    """``spec`` in mapping form: a plain list is the ``ordered`` strategy over it."""
    if isinstance(spec, RouteConfig):
        return spec
    return RouteConfig(providers=list(spec))


def route_providers(spec: Sequence[str] | RouteConfig) -> list[str]:
    """The provider names of a route, in configured order."""
    return list(spec.providers if isinstance(spec, RouteConfig) else spec)


class Rule(Protocol):
    """A route key as a rule: does it match this destination, and how strongly?"""

    @property
    def key(self) -> str:
        """The route key (``+4420``, ``GB``, ``*``)."""

    @property
    def kind(self) -> str:
        """``prefix``, ``country`` or ``default``."""

    def matches(self, number: str, country: str) -> bool:
        """True when this rule covers ``number`` (E.164) in ``country``."""

    @property
    def rank(self) -> tuple[int, int]:
        """Higher wins among matching rules: (kind rank, specificity)."""


@dataclass(frozen=True)
class PrefixRule:
    """``+4420``: numbers starting with the prefix; the longest matching prefix wins."""

    key: str
    kind: str = "prefix"

    def matches(self, number: str, country: str) -> bool:
        """True when ``number`` starts with the prefix."""
        return number.startswith(self.key)

    @property
    def rank(self) -> tuple[int, int]:
        """Prefixes beat countries; a longer prefix beats a shorter one."""
        return (2, len(self.key))


@dataclass(frozen=True)
class CountryRule:
    """``GB``: numbers phonenumbers places in that region."""

    key: str
    kind: str = "country"

    def matches(self, number: str, country: str) -> bool:
        """True when the number's region is this country."""
        return country == self.key

    @property
    def rank(self) -> tuple[int, int]:
        """Below any prefix, above the default."""
        return (1, 0)


@dataclass(frozen=True)
class DefaultRule:
    """``*``: every number."""

    key: str = DEFAULT_KEY
    kind: str = "default"

    def matches(self, number: str, country: str) -> bool:
        """Always."""
        return True

    @property
    def rank(self) -> tuple[int, int]:
        """The last resort."""
        return (0, 0)


def rule_for(key: str) -> Rule:
    """The rule a route key stands for."""
    if key == DEFAULT_KEY:
        return DefaultRule()
    if key.startswith("+"):
        return PrefixRule(key)
    return CountryRule(key)


@dataclass(frozen=True)
class Match:
    """The route a destination takes: the rule that matched and the route's config."""

    rule: Rule
    route: RouteConfig

    @property
    def why(self) -> str:
        """The rule in words, for ``route explain``."""
        if self.rule.kind == "prefix":
            return f"longest matching prefix {self.rule.key}"
        if self.rule.kind == "country":
            return f"country {self.rule.key} (no prefix route matches)"
        return "default route * (no prefix or country route matches)"


class RouteTable:
    """The configured routes as rules; ``match`` finds the one a destination takes."""

    def __init__(self, routes: Mapping[str, Sequence[str] | RouteConfig]) -> None:
        self.routes = {key: route_config(spec) for key, spec in routes.items()}
        self.rules = sorted(
            (rule_for(key) for key in self.routes), key=lambda r: r.rank, reverse=True
        )

    def match(self, number: str, country: str) -> Match:
        """The best matching route: longest prefix, then country, then ``*``.

        Raises ``ConfigError`` when nothing matches (a table without ``*``).
        """
        for rule in self.rules:
            if rule.matches(number, country):
                return Match(rule, self.routes[rule.key])
        raise ConfigError("routes", 'needs a "*" default route')


def check_route_key(key: str) -> None:
    """Raise ``ConfigError`` (key ``routes.<key>``) unless ``key`` can match a number.

    A key is ``*``, a prefix (``+`` and digits) or a region phonenumbers knows, as an
    upper-case ISO 3166 alpha-2 code.
    """
    if key == DEFAULT_KEY or _PREFIX.fullmatch(key) or key in phonenumbers.SUPPORTED_REGIONS:
        return
    raise ConfigError(f"routes.{key}", _key_problem(key))


def _key_problem(key: str) -> str:
    upper = key.upper()
    if upper == "UK":
        return 'not an ISO 3166 code: the United Kingdom is "GB" ("+44" also covers GG, IM, JE)'
    if upper in phonenumbers.SUPPORTED_REGIONS:
        return f"a country is an upper-case ISO 3166 alpha-2 code: {upper!r}"
    if key.startswith("+"):
        return "a prefix is + and 1 to 15 digits, the first not 0 (e.g. +44, +4420)"
    return "not a route key: a country (ISO 3166 alpha-2, e.g. GB), a prefix (+44) or *"


def route_coverage_warnings(routes: Mapping[str, Sequence[str] | RouteConfig]) -> list[str]:
    """One line per country route that does not cover what its calling code does.

    A route for the main country of a shared calling code (``GB`` for +44, ``US`` for +1)
    leaves that code's other territories to ``*`` (unless they have routes of their own
    or ``*`` has the same providers); a prefix covering the whole calling code makes the
    country route unused.
    """
    routes = {key: route_providers(spec) for key, spec in routes.items()}
    warnings = []
    for key in sorted(k for k in routes if k in phonenumbers.SUPPORTED_REGIONS):
        code = phonenumbers.country_code_for_region(key)
        plan = f"+{code}"
        covering = [p for p in routes if _PREFIX.fullmatch(p) and plan.startswith(p)]
        if covering:
            prefix = max(covering, key=len)
            warnings.append(f"route {key} is never used: {prefix} matches every {plan} number")
            continue
        if phonenumbers.region_code_for_country_code(code) != key:
            continue
        left_out = [
            region
            for region in phonenumbers.COUNTRY_CODE_TO_REGION_CODE.get(code, ())
            if region != key and region not in routes
        ]
        if left_out and list(routes.get(DEFAULT_KEY, ())) != list(routes[key]):
            warnings.append(
                f"route {key} leaves out {', '.join(left_out)}, which share calling code {plan}:"
                f" their numbers go to {DEFAULT_KEY!r}; route {plan!r} to cover them all"
            )
    return warnings
