"""What the guard counts and remembers, behind one protocol with two implementations.

``GuardState.observe`` counts one OTP (once per message id: a redelivered or repeated
message is not counted twice) and answers every figure the rules need in one call;
``block`` records a prefix's block with its cool-down; ``converted`` credits a message's
conversion to the prefix and the time bucket it was sent in. ``LocalGuardState`` keeps
it in this process (``smsrelay.guard.redis_state`` in Redis, shared by every worker).

Counters are kept per bucket of ``guard.bucket`` seconds; a window sums its buckets.
A baseline is the moving average of past windows' volume (each window's count capped at
the limit it had, so a refused flood does not raise its own limit).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Protocol

from smsrelay.guard.settings import GuardSettings

__all__ = [
    "Block",
    "Figures",
    "GuardState",
    "LocalGuardState",
    "Observation",
    "cooldown",
]

UNLIMITED = 1e15


@dataclass(frozen=True, slots=True)
class Observation:
    """One OTP about to be sent: who to, what it would cost (micro-units), when."""

    message_id: str
    number: str
    prefix: str
    country: str
    cost_micros: int
    now: float


@dataclass(frozen=True, slots=True)
class Block:
    """A prefix refused until ``until`` (epoch seconds) by ``rule``; ``detail`` the figure."""

    prefix: str
    rule: str
    until: float
    strikes: int
    detail: str


@dataclass(frozen=True, slots=True)
class Figures:
    """Everything the rules judge one OTP by (counts include this OTP)."""

    counted: bool  # False: this message id was counted before
    number_sent: int
    prefix_sent: int
    prefix_baseline: float
    prefix_cost_micros: int
    judged_sent: int  # the prefix's OTPs older than the grace, since its last block
    judged_converted: int
    country_sent: int
    country_baseline: float
    conversions_seen: int  # conversions of any prefix within the window
    block: Block | None


class GuardState(Protocol):
    """Counters and blocks; see the module docstring."""

    async def observe(self, seen: Observation) -> Figures:
        """Count ``seen`` (unless its id was counted) and answer the figures."""

    async def block(self, prefix: str, rule: str, detail: str, now: float) -> Block:
        """Block ``prefix`` (a block in force is kept as it is and returned)."""

    async def refused(self, seen: Observation) -> None:
        """``seen`` was refused (or would be, in monitor mode): it is not judged for
        conversion, and its conversion is not credited (it was never sent)."""

    async def converted(self, message_id: str, now: float) -> bool:
        """Credit the conversion of ``message_id``; False if not counted or already."""

    async def blocks(self, now: float) -> list[Block]:
        """The blocks in force."""

    async def unblock(self, prefix: str, now: float) -> bool:
        """Lift the block of ``prefix`` and forget its repeats; False if none."""

    async def close(self) -> None:
        """Release connections."""


def cooldown(settings: GuardSettings, strikes: int) -> float:
    """The block's length at its ``strikes``-th repeat: doubled each time, capped."""
    rule = settings.conversion
    return float(min(rule.cooldown * 2 ** min(strikes - 1, 60), rule.max_cooldown))


def floor_or_unlimited(floor: int | None) -> float:
    """A limit's floor, or no cap at all (the baseline then follows the real volume)."""
    return float(floor) if floor is not None else UNLIMITED


@dataclass
class _Series:
    """Bucketed counters and a baseline of one number, prefix or country."""

    sends: dict[int, int] = field(default_factory=dict)
    refused: dict[int, int] = field(default_factory=dict)
    conversions: dict[int, int] = field(default_factory=dict)
    costs: dict[int, int] = field(default_factory=dict)
    period: int | None = None
    period_count: int = 0
    baseline: float | None = None
    clear_after: float = 0.0

    def trim(self, oldest: int) -> None:
        for counters in (self.sends, self.refused, self.conversions, self.costs):
            for index in [i for i in counters if i < oldest]:
                del counters[index]

    def roll(self, period: int, floor: float, factor: float, alpha: float) -> None:
        """Close finished windows into the baseline (see the module docstring)."""
        if self.period is None:
            self.period = period
        if period <= self.period:
            return
        done = min(self.period_count, max(floor, factor * (self.baseline or 0.0)))
        gap = period - self.period
        decay = (1 - alpha) ** (gap - 1)
        if self.baseline is None:
            self.baseline = done * decay
        else:
            self.baseline = self.baseline * (1 - alpha) ** gap + alpha * done * decay
        self.period, self.period_count = period, 0


class LocalGuardState:
    """``GuardState`` in this process: for one worker, tests, and Redis outages."""

    def __init__(self, settings: GuardSettings) -> None:
        self.settings = settings
        self._numbers: dict[str, _Series] = {}
        self._prefixes: dict[str, _Series] = {}
        self._countries: dict[str, _Series] = {}
        self._global = _Series()
        # message id -> (prefix, bucket): what its conversion is credited to.
        self._messages: dict[str, tuple[str, int, float]] = {}
        self._blocks: dict[str, Block] = {}
        self._strikes: dict[str, tuple[int, float]] = {}
        self._observed = 0

    def _bucket(self, now: float) -> int:
        return math.floor(now / self.settings.bucket)

    def _span(self, window: float) -> int:
        return max(1, math.ceil(window / self.settings.bucket))

    async def observe(self, seen: Observation) -> Figures:
        """See ``GuardState.observe``."""
        s = self.settings
        b = self._bucket(seen.now)
        counted = seen.message_id not in self._messages
        if counted:
            self._messages[seen.message_id] = (seen.prefix, b, seen.now + s.window + s.bucket)
        self._sweep(seen.now)
        number = self._numbers.setdefault(seen.number, _Series())
        number.trim(b - self._span(s.number.window) + 1)
        prefix = self._prefixes.setdefault(seen.prefix, _Series())
        country = self._countries.setdefault(seen.country, _Series())
        oldest = b - self._span(s.window) + 1
        for series in (prefix, country, self._global):
            series.trim(oldest)
        period = math.floor(seen.now / s.window)
        alpha = 1 / s.baseline_windows
        prefix.roll(period, floor_or_unlimited(s.prefix.floor), s.prefix.factor, alpha)
        country.roll(period, floor_or_unlimited(s.country.floor), s.country.factor, alpha)
        if counted:
            for series in (number, prefix, country):
                series.sends[b] = series.sends.get(b, 0) + 1
            prefix.period_count += 1
            country.period_count += 1
            if seen.cost_micros > 0:
                prefix.costs[b] = prefix.costs.get(b, 0) + seen.cost_micros
        judged = self._judged(prefix, seen.now)
        return Figures(
            counted=counted,
            number_sent=sum(number.sends.values()),
            prefix_sent=sum(prefix.sends.values()),
            prefix_baseline=prefix.baseline or 0.0,
            prefix_cost_micros=sum(prefix.costs.values()),
            judged_sent=sum(prefix.sends.get(i, 0) - prefix.refused.get(i, 0) for i in judged),
            judged_converted=sum(prefix.conversions.get(i, 0) for i in judged),
            country_sent=sum(country.sends.values()),
            country_baseline=country.baseline or 0.0,
            conversions_seen=sum(self._global.conversions.values()),
            block=self._block_of(seen.prefix, seen.now),
        )

    def _judged(self, series: _Series, now: float) -> list[int]:
        """Buckets wholly older than the grace and not before the last block's end."""
        size = self.settings.bucket
        ripe = now - self.settings.conversion.grace
        return [
            i for i in series.sends if (i + 1) * size <= ripe and i * size >= series.clear_after
        ]

    def _block_of(self, prefix: str, now: float) -> Block | None:
        found = self._blocks.get(prefix)
        return found if found is not None and found.until > now else None

    async def block(self, prefix: str, rule: str, detail: str, now: float) -> Block:
        """See ``GuardState.block``."""
        current = self._block_of(prefix, now)
        if current is not None:
            return current
        strikes, forget_at = self._strikes.get(prefix, (0, 0.0))
        strikes = strikes + 1 if forget_at > now else 1
        self._strikes[prefix] = (strikes, now + self.settings.conversion.memory)
        until = now + cooldown(self.settings, strikes)
        self._blocks[prefix] = Block(prefix, rule, until, strikes, detail)
        self._prefixes.setdefault(prefix, _Series()).clear_after = until
        return self._blocks[prefix]

    async def refused(self, seen: Observation) -> None:
        """See ``GuardState.refused``."""
        b = self._bucket(seen.now)
        series = self._prefixes.setdefault(seen.prefix, _Series())
        series.refused[b] = series.refused.get(b, 0) + 1
        sent = self._messages.get(seen.message_id)
        if sent is not None:
            self._messages[seen.message_id] = (sent[0], -1, sent[2])

    async def converted(self, message_id: str, now: float) -> bool:
        """See ``GuardState.converted``."""
        sent = self._messages.get(message_id)
        if sent is None or sent[1] < 0:
            return False
        prefix, b, expires = sent
        self._messages[message_id] = (prefix, -1, expires)  # credited once
        series = self._prefixes.get(prefix)
        if series is not None:
            series.conversions[b] = series.conversions.get(b, 0) + 1
        self._global.conversions[b] = self._global.conversions.get(b, 0) + 1
        return True

    async def blocks(self, now: float) -> list[Block]:
        """See ``GuardState.blocks``."""
        return sorted((b for b in self._blocks.values() if b.until > now), key=lambda b: b.prefix)

    async def unblock(self, prefix: str, now: float) -> bool:
        """See ``GuardState.unblock``."""
        found = self._blocks.pop(prefix, None)
        self._strikes.pop(prefix, None)
        self._prefixes.setdefault(prefix, _Series()).clear_after = now
        return found is not None and found.until > now

    async def close(self) -> None:
        """Nothing to release."""

    def _sweep(self, now: float) -> None:
        # Forget messages and numbers past their windows now and then, not on every OTP.
        self._observed += 1
        if self._observed % 10_000:
            return
        self._messages = {k: v for k, v in self._messages.items() if v[2] > now}
        oldest = self._bucket(now) - self._span(self.settings.number.window) + 1
        self._numbers = {
            k: v for k, v in self._numbers.items() if max(v.sends, default=-1) >= oldest
        }
        # A prefix (or country) quiet for a window, with no baseline left to speak of and
        # no block, is forgotten as Redis would expire its key.
        quiet = self._bucket(now) - self._span(self.settings.window) + 1
        for series in (self._prefixes, self._countries):
            for key in [k for k, v in series.items() if _forgettable(v, quiet, now)]:
                if self._block_of(key, now) is None:
                    del series[key]


def _forgettable(series: _Series, oldest: int, now: float) -> bool:
    recent = max(series.sends, default=-1) >= oldest
    return not recent and (series.baseline or 0.0) < 0.5 and series.clear_after <= now
