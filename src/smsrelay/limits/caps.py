"""Spend caps: the most that may be spent per UTC day and per month, overall, per provider
and per destination country, in ``spend_caps.currency``.

The planner asks ``allows(provider, country, amount)`` for each candidate (amount: the
estimated cost of this message there) and drops the ones refused; the dispatcher calls
``spend(provider, country, amount)`` once a provider accepted the message. A cap is
reached when what was spent plus this message would exceed it. Between ``allows`` and
``spend`` other workers may spend too: a cap can be overshot by the messages in flight at
that moment, never more.

Amounts are counted in micro-units of the currency (integers, rounded up), so sums do not
drift as floats would; a price has at most 8 decimals, the extra rounding is on the
cautious side.

Two implementations, chosen at wiring time: ``LocalSpendCaps`` (one process, and the
fallback) and ``RedisSpendCaps`` (``smsrelay.limits.redis_caps``: shared by every worker).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import ROUND_CEILING, Decimal
from typing import Protocol

from smsrelay.limits.metrics import LimitMetrics
from smsrelay.limits.settings import CapAmounts, SpendCapSettings

__all__ = [
    "MICROS",
    "Cap",
    "CapDecision",
    "LocalSpendCaps",
    "SpendCaps",
    "applicable",
    "micros",
]

MICROS = 1_000_000
Clock = Callable[[], datetime]


def micros(amount: Decimal) -> int:
    """``amount`` in millionths of the currency, rounded up."""
    return int((amount * MICROS).to_integral_value(rounding=ROUND_CEILING))


@dataclass(frozen=True, slots=True)
class Cap:
    """One cap that applies to a send: ``scope`` total/provider/country, its ``name``."""

    scope: str
    name: str
    period: str  # "day" or "month"
    period_id: str  # "2026-12-01" or "2026-12"
    limit: int  # micro-units

    @property
    def label(self) -> str:
        """``provider twilio per day``: how logs and ``route explain`` name it."""
        who = "overall" if self.scope == "total" else f"{self.scope} {self.name}"
        return f"{who} per {self.period}"


@dataclass(frozen=True, slots=True)
class CapDecision:
    """May this amount be spent? If not, which cap stops it and how much it has spent."""

    allowed: bool
    cap: str | None = None  # the label of the cap that refused (or is nearest when allowed)
    limit: Decimal | None = None
    spent: Decimal | None = None
    currency: str | None = None

    @property
    def remaining(self) -> Decimal | None:
        """What that cap still allows."""
        return None if self.limit is None or self.spent is None else self.limit - self.spent


class SpendCaps(Protocol):
    """Spend caps shared by whoever holds the same caps (see the module docstring)."""

    async def allows(self, provider: str, country: str, amount: Decimal) -> CapDecision:
        """May ``amount`` be spent sending to ``country`` through ``provider`` now?"""
        ...

    async def spend(self, provider: str, country: str, amount: Decimal) -> None:
        """Count ``amount`` as spent against every cap that applies."""
        ...

    async def close(self) -> None:
        """Release connections."""
        ...


def applicable(
    settings: SpendCapSettings, provider: str, country: str, now: datetime, share: float = 1.0
) -> Iterator[Cap]:
    """The caps a send through ``provider`` to ``country`` counts against at ``now``."""
    day, month = now.astimezone(UTC).strftime("%Y-%m-%d"), now.astimezone(UTC).strftime("%Y-%m")
    scopes: list[tuple[str, str, CapAmounts | None]] = [
        ("total", "*", settings.total),
        ("provider", provider, settings.providers.get(provider)),
        ("country", country, settings.countries.get(country)),
    ]
    for scope, name, amounts in scopes:
        if amounts is None:
            continue
        for period, period_id, limit in (
            ("day", day, amounts.day),
            ("month", month, amounts.month),
        ):
            if limit is not None:
                yield Cap(scope, name, period, period_id, math.floor(micros(limit) * share))


def decide(
    settings: SpendCapSettings, caps: list[Cap], spent: list[int], amount: int
) -> tuple[CapDecision, Cap | None]:
    """Refused by the first cap that ``amount`` would exceed; else allowed, nearest cap shown."""
    if not caps:
        return CapDecision(allowed=True), None
    pairs = list(zip(caps, spent, strict=True))
    for cap, used in pairs:
        if used + amount > cap.limit:
            return _decision(False, cap, used, settings.currency), cap
    cap, used = min(pairs, key=lambda p: p[0].limit - p[1])
    return _decision(True, cap, used, settings.currency), None


def _decision(allowed: bool, cap: Cap, used: int, currency: str) -> CapDecision:
    return CapDecision(
        allowed=allowed,
        cap=cap.label,
        limit=Decimal(cap.limit) / MICROS,
        spent=Decimal(used) / MICROS,
        currency=currency,
    )


class LocalSpendCaps:
    """``SpendCaps`` for one process; with ``share`` < 1, a worker's part of each cap."""

    def __init__(
        self,
        settings: SpendCapSettings,
        *,
        metrics: LimitMetrics | None = None,
        clock: Clock = lambda: datetime.now(UTC),
        share: float = 1.0,
    ) -> None:
        self.settings = settings
        self._metrics = metrics
        self._clock = clock
        self._share = share
        self._spent: dict[tuple[str, str, str], int] = {}

    async def allows(self, provider: str, country: str, amount: Decimal) -> CapDecision:
        """See ``SpendCaps.allows``."""
        caps = list(applicable(self.settings, provider, country, self._clock(), self._share))
        spent = [self._spent.get(_key(cap), 0) for cap in caps]
        decision, refused = decide(self.settings, caps, spent, micros(amount))
        if refused is not None and self._metrics is not None:
            self._metrics.refused(refused, decision.spent)
        return decision

    async def spend(self, provider: str, country: str, amount: Decimal) -> None:
        """See ``SpendCaps.spend``."""
        self.add(list(applicable(self.settings, provider, country, self._clock())), micros(amount))

    def add(self, caps: list[Cap], amount: int) -> None:
        """Count ``amount`` against ``caps``; counters of past periods are dropped."""
        current = {cap.period_id for cap in caps}
        if caps and any(k[0] not in current for k in self._spent):
            self._spent = {k: v for k, v in self._spent.items() if k[0] in current}
        for cap in caps:
            self._spent[_key(cap)] = self._spent.get(_key(cap), 0) + amount

    async def close(self) -> None:
        """Nothing to release."""


def _key(cap: Cap) -> tuple[str, str, str]:
    return (cap.period_id, cap.scope, cap.name)
