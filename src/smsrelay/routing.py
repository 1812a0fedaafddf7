"""The routing table: a destination → the ordered providers to try.

Rules are keyed by number prefix (``+4420``), by country (``GB``, from phonenumbers)
or ``*``. The longest matching prefix wins, then the country, then ``*``. Within a
rule, providers are tried in order; failover walks the list.

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

import phonenumbers

from smsrelay.errors import ConfigError
from smsrelay.models import SendRequest

DEFAULT_KEY = "*"
# Calling codes never start with 0; E.164 numbers have at most 15 digits.
_PREFIX = re.compile(r"\+[1-9][0-9]{0,14}")


@dataclass(frozen=True)
class Router:
    """Resolves a request to the ordered provider names to try."""

    routes: Mapping[str, Sequence[str]]

    def route(self, request: SendRequest) -> list[str]:
        """Providers for ``request``, most preferred first."""
        prefixes = [k for k in self.routes if k.startswith("+") and request.to.startswith(k)]
        if prefixes:
            return list(self.routes[max(prefixes, key=len)])
        if request.country in self.routes:
            return list(self.routes[request.country])
        return list(self.routes["*"])


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


def route_coverage_warnings(routes: Mapping[str, Sequence[str]]) -> list[str]:
    """One line per country route that does not cover what its calling code does.

    A route for the main country of a shared calling code (``GB`` for +44, ``US`` for +1)
    leaves that code's other territories to ``*`` (unless they have routes of their own
    or ``*`` has the same providers); a prefix covering the whole calling code makes the
    country route unused.
    """
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
