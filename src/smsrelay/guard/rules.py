"""The guard's rules: from one OTP's figures to a verdict. Pure, shared by both states.

In order: a block in force; the conversion rule (which records a block); velocity per
number, per prefix, per country; the prefix's money budget. The first that applies is
the verdict; its ``code`` (``guard-velocity-prefix``…) and ``detail`` (the figure) are
what a refused message's error carries.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal

from smsrelay.guard.settings import GuardSettings
from smsrelay.guard.state import Figures

__all__ = ["RULES", "Verdict", "judge"]

# Every rule a verdict may name (the metric's label set).
RULES = (
    "blocked",
    "conversion",
    "velocity-number",
    "velocity-prefix",
    "velocity-country",
    "budget-prefix",
)


@dataclass(frozen=True, slots=True)
class Verdict:
    """Refuse: ``rule`` says which, ``detail`` the figure; ``block`` records a block."""

    rule: str
    detail: str
    block: bool = False

    @property
    def code(self) -> str:
        """The refused message's error code, e.g. ``guard-velocity-prefix``."""
        return f"guard-{self.rule}"


def judge(figures: Figures, settings: GuardSettings, prefix: str, country: str) -> Verdict | None:
    """The verdict on one OTP, or None when it may be sent."""
    for rule in (_blocked, _conversion, _number, _prefix, _country, _budget):
        verdict = rule(figures, settings, prefix, country)
        if verdict is not None:
            return verdict
    return None


def judged_rate(figures: Figures, settings: GuardSettings) -> float | None:
    """The prefix's conversion over its judged OTPs; None while it cannot be judged."""
    if figures.conversions_seen == 0 or figures.judged_sent < settings.conversion.min_judged:
        return None
    return figures.judged_converted / figures.judged_sent


def _blocked(f: Figures, s: GuardSettings, prefix: str, country: str) -> Verdict | None:
    if f.block is None:
        return None
    until = datetime.fromtimestamp(f.block.until, UTC).isoformat(timespec="seconds")
    return Verdict(
        "blocked",
        f"prefix {prefix} blocked by guard-{f.block.rule} until {until}: {f.block.detail}",
    )


def _conversion(f: Figures, s: GuardSettings, prefix: str, country: str) -> Verdict | None:
    rule = s.conversion
    rate = judged_rate(f, s)
    if not rule.enabled or rate is None or rate >= rule.min_conversion:
        return None
    if f.prefix_sent < rule.rise * f.prefix_baseline:
        return None
    return Verdict(
        "conversion",
        f"prefix {prefix}: {f.judged_converted} of {f.judged_sent} OTPs converted ({rate:.0%},"
        f" min {rule.min_conversion:.0%}) while {f.prefix_sent} were sent in {s.window:g} s"
        f" (baseline {f.prefix_baseline:.1f})",
        block=True,
    )


def _number(f: Figures, s: GuardSettings, prefix: str, country: str) -> Verdict | None:
    limit = s.number.limit
    if limit is None or f.number_sent <= limit:
        return None
    return Verdict(
        "velocity-number",
        f"{f.number_sent} OTPs to this number in {s.number.window:g} s (limit {limit})",
    )


def _prefix(f: Figures, s: GuardSettings, prefix: str, country: str) -> Verdict | None:
    rule = s.prefix
    if rule.floor is None:
        return None
    limit = max(rule.floor, rule.factor * f.prefix_baseline)
    if f.prefix_sent <= limit:
        return None
    rate = judged_rate(f, s)
    if rule.exempt_conversion is not None and rate is not None and rate >= rule.exempt_conversion:
        return None  # a surge that converts is people logging in
    return Verdict(
        "velocity-prefix",
        f"{f.prefix_sent} OTPs to prefix {prefix} in {s.window:g} s (limit {limit:.0f}:"
        f" max({rule.floor}, {rule.factor:g} x baseline {f.prefix_baseline:.1f}))",
    )


def _country(f: Figures, s: GuardSettings, prefix: str, country: str) -> Verdict | None:
    rule = s.country
    if rule.floor is None:
        return None
    limit = max(rule.floor, rule.factor * f.country_baseline)
    if f.country_sent <= limit:
        return None
    return Verdict(
        "velocity-country",
        f"{f.country_sent} OTPs to {country} in {s.window:g} s (limit {limit:.0f}:"
        f" max({rule.floor}, {rule.factor:g} x baseline {f.country_baseline:.1f}))",
    )


def _budget(f: Figures, s: GuardSettings, prefix: str, country: str) -> Verdict | None:
    budget = s.prefix.budget
    if budget is None:
        return None
    spent = Decimal(f.prefix_cost_micros) / 1_000_000
    if spent <= budget:
        return None
    return Verdict(
        "budget-prefix",
        f"estimated {spent:.2f} {s.prefix.currency} of OTPs to prefix {prefix} in"
        f" {s.window:g} s (budget {budget})",
    )
