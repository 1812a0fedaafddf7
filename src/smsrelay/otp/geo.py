"""Geo permissions: which destination countries may be sent to, for OTPs and for all.

Two rule sets from configuration (``geo.all``, ``geo.otp``), each an allow list (empty:
every country) and a deny list. ``geo.all`` applies to every message, ``geo.otp`` to
``kind: otp`` ones as well. A message a rule blocks is never sent: it ends ``rejected``
with an error whose code names the rule (``geo-otp-deny``, ``geo-all-allow``…).
"""

from __future__ import annotations

from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field

from smsrelay.models import EventError, Kind, SendRequest

Country = Annotated[str, Field(pattern=r"^[A-Z]{2}$")]


class CountryRules(BaseModel):
    """An allow list (empty: all countries) and a deny list of ISO 3166 alpha-2 codes."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    allow: frozenset[Country] = frozenset()
    deny: frozenset[Country] = frozenset()


class GeoSettings(BaseModel):
    """``geo.all`` for every message, ``geo.otp`` for OTPs on top of it."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    all: CountryRules = CountryRules()
    otp: CountryRules = CountryRules()


class GeoRules:
    """Decides whether a request's destination country is permitted."""

    def __init__(self, settings: GeoSettings) -> None:
        self.settings = settings

    @property
    def active(self) -> bool:
        """False when no rule is configured (nothing to check)."""
        s = self.settings
        return bool(s.all.allow or s.all.deny or s.otp.allow or s.otp.deny)

    def refusal(self, request: SendRequest) -> EventError | None:
        """The error a blocked request ends with, or None when it may be sent."""
        scopes = [("all", self.settings.all)]
        if request.kind is Kind.OTP:
            scopes.append(("otp", self.settings.otp))
        for scope, rules in scopes:
            if request.country in rules.deny:
                return _blocked(f"geo-{scope}-deny", f"{request.country} is in geo.{scope}.deny")
            if rules.allow and request.country not in rules.allow:
                return _blocked(
                    f"geo-{scope}-allow", f"{request.country} is not in geo.{scope}.allow"
                )
        return None


def _blocked(code: str, message: str) -> EventError:
    return EventError(code=code, message=message, retryable=False)
