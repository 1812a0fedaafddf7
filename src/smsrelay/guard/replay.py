"""An attack replayed against the guard: legitimate OTPs mixed with SMS pumping.

Simulated time (the guard's clock), real state (Redis or in-process): hours of traffic
replay in seconds and the same seed gives the same traffic, so ``enforce`` and
``monitor`` can be compared decision by decision.

- Legitimate: OTPs to many prefixes in many countries, busier in some prefixes than
  others (a Zipf law), a few users asking twice; ``conversion`` of them are used after a
  delay of seconds to minutes, and the harness reports it (``Guard.converted``) as the
  feedback endpoint or a verification check would.
- Pumping: many numbers in a few premium-rate prefixes, almost never converted, in
  bursts (``burst`` OTPs within seconds, then a pause) or a slow steady trickle.

The report: per pumped prefix, OTPs sent before its first refusal and in all; the share
of legitimate OTPs refused; the estimated cost of the pumped OTPs not sent (saved).
"""

from __future__ import annotations

import heapq
import itertools
import random
from collections import Counter
from dataclasses import dataclass, field
from decimal import Decimal

from smsrelay.guard.guard import Guard, prefix_of

__all__ = ["AttackPlan", "PumpedPrefix", "Replay", "Report", "replay"]

# (country, calling-code prefix, price per part) of legitimate destinations.
LEGIT_COUNTRIES = (
    ("US", "+1", "0.0079"),
    ("GB", "+447", "0.0400"),
    ("DE", "+4915", "0.0750"),
    ("FR", "+336", "0.0650"),
    ("IN", "+919", "0.0050"),
    ("BR", "+55119", "0.0300"),
    ("ES", "+346", "0.0700"),
    ("IT", "+393", "0.0700"),
    ("NL", "+316", "0.0800"),
    ("MX", "+5255", "0.0200"),
    ("JP", "+8190", "0.0700"),
    ("AU", "+614", "0.0350"),
)


@dataclass(frozen=True)
class PumpedPrefix:
    """One premium-rate prefix an attacker pumps: bursts of ``burst`` OTPs ``pause`` apart
    (``burst=1``: a steady trickle), at ``price`` per part."""

    prefix: str
    country: str
    price: Decimal
    burst: int = 40
    pause: float = 120.0


DEFAULT_PUMPED = (
    PumpedPrefix("+3712940", "LV", Decimal("0.38"), burst=60, pause=90.0),
    PumpedPrefix("+22462200", "GN", Decimal("0.52"), burst=25, pause=200.0),
    PumpedPrefix("+25261550", "SO", Decimal("0.61"), burst=120, pause=300.0),
    # A satellite range (+882 16): no country of its own.
    PumpedPrefix("+8821620", "XS", Decimal("1.10"), burst=1, pause=45.0),
)


@dataclass(frozen=True)
class AttackPlan:
    """The traffic: how long, how much, when the attack starts, the seed."""

    seconds: float = 3 * 3600.0
    legit_per_second: float = 2.0
    prefixes_per_country: int = 40
    conversion: float = 0.85
    resend_share: float = 0.03
    attack_start: float = 3600.0
    attack_seconds: float = 3600.0
    pumped: tuple[PumpedPrefix, ...] = DEFAULT_PUMPED
    pumped_conversion: float = 0.01
    seed: int = 9


@dataclass
class PrefixFigures:
    """What happened to one pumped prefix."""

    country: str
    sent_before_refusal: int = 0
    sent: int = 0
    refused: int = 0
    cost_sent: Decimal = Decimal(0)
    cost_saved: Decimal = Decimal(0)
    rules: Counter[str] = field(default_factory=Counter)
    refused_once: bool = False


@dataclass
class Report:
    """The replay's figures (``decisions``: message id → rule, for comparing modes)."""

    mode: str
    legit: int = 0
    legit_refused: int = 0
    legit_rules: Counter[str] = field(default_factory=Counter)
    legit_cost_refused: Decimal = Decimal(0)
    pumped: dict[str, PrefixFigures] = field(default_factory=dict)
    decisions: dict[str, str] = field(default_factory=dict)

    @property
    def legit_refused_share(self) -> float:
        """Share of legitimate OTPs refused (or, in monitor mode, that would be)."""
        return self.legit_refused / self.legit if self.legit else 0.0

    @property
    def worst_before_refusal(self) -> int:
        """The most pumped OTPs one prefix got sent before its first refusal."""
        return max((p.sent_before_refusal for p in self.pumped.values()), default=0)

    @property
    def cost_saved(self) -> Decimal:
        """Estimated cost of the pumped OTPs refused."""
        return sum((p.cost_saved for p in self.pumped.values()), Decimal(0))

    @property
    def cost_pumped(self) -> Decimal:
        """Estimated cost of every pumped OTP requested."""
        return sum((p.cost_sent + p.cost_saved for p in self.pumped.values()), Decimal(0))

    def lines(self) -> list[str]:
        """The report as Markdown."""
        out = [
            f"mode `{self.mode}`: {self.legit} legitimate OTPs, {self.legit_refused} refused"
            f" ({self.legit_refused_share:.3%}) {dict(self.legit_rules) or ''}".rstrip(),
            "",
            "| pumped prefix | country | requested | sent before 1st refusal | sent | refused"
            " | rules | cost requested | cost saved |",
            "|---|---|---:|---:|---:|---:|---|---:|---:|",
        ]
        for prefix, p in sorted(self.pumped.items()):
            rules = ", ".join(f"{r} {n}" for r, n in p.rules.most_common())
            out.append(
                f"| {prefix} | {p.country} | {p.sent + p.refused} | {p.sent_before_refusal}"
                f" | {p.sent} | {p.refused} | {rules} | {p.cost_sent + p.cost_saved:.2f}"
                f" | {p.cost_saved:.2f} |"
            )
        share = self.cost_saved / self.cost_pumped if self.cost_pumped else Decimal(0)
        out += [
            "",
            f"cost saved: {self.cost_saved:.2f} of {self.cost_pumped:.2f} requested by pumping"
            f" ({share:.1%}); legitimate cost refused: {self.legit_cost_refused:.2f}",
        ]
        return out


@dataclass(order=True)
class _Event:
    at: float
    seq: int
    kind: str = field(compare=False)  # "send" | "convert"
    message_id: str = field(compare=False)
    number: str = field(compare=False, default="")
    country: str = field(compare=False, default="")
    price: Decimal = field(compare=False, default=Decimal(0))
    pumped: bool = field(compare=False, default=False)
    converts_after: float | None = field(compare=False, default=None)


class Replay:
    """Builds the traffic of an ``AttackPlan`` and plays it through a guard."""

    def __init__(self, plan: AttackPlan, start: float = 1_800_000_000.0) -> None:
        self.plan = plan
        self.start = start
        self.now = start
        self._seq = itertools.count()

    def clock(self) -> float:
        """The simulated time: give it to the guard (``Guard(clock=replay.clock)``)."""
        return self.now

    def traffic(self) -> list[_Event]:
        """Every send of the plan, in time order (conversions are added while playing)."""
        rng = random.Random(self.plan.seed)
        events = self._legit(rng) + self._pumping(rng)
        events.sort()
        return events

    def _legit(self, rng: random.Random) -> list[_Event]:
        p = self.plan
        prefixes = [
            (
                country,
                f"{code}{rng.randrange(10 ** (9 - len(code)), 10 ** (10 - len(code)))}",
                price,
            )
            for country, code, price in LEGIT_COUNTRIES
            for _ in range(p.prefixes_per_country)
        ]
        weights = [1 / (i + 1) ** 0.8 for i in range(len(prefixes))]
        rng.shuffle(prefixes)
        out: list[_Event] = []
        t, n = 0.0, 0
        while True:
            t += rng.expovariate(p.legit_per_second)
            if t >= p.seconds:
                return out
            country, prefix, price = rng.choices(prefixes, weights)[0]
            number = prefix + f"{rng.randrange(10000):04d}"
            sends = 2 if rng.random() < p.resend_share else 1
            for k in range(sends):
                n += 1
                converts = rng.lognormvariate(3.0, 0.8) if rng.random() < p.conversion else None
                at = self.start + t + k * rng.uniform(30, 90)
                # A user who asked twice uses the second code only.
                converts = converts if k == sends - 1 else None
                out.append(self._send(at, f"legit-{n}", number, country, price, False, converts))

    def _pumping(self, rng: random.Random) -> list[_Event]:
        p = self.plan
        out: list[_Event] = []
        for target in p.pumped:
            t, n = p.attack_start + rng.uniform(0, 60), 0
            while t < p.attack_start + p.attack_seconds:
                for _ in range(target.burst):
                    n += 1
                    number = target.prefix + f"{rng.randrange(10000):04d}"
                    converts = rng.uniform(5, 60) if rng.random() < p.pumped_conversion else None
                    at = (
                        self.start
                        + t
                        + (rng.uniform(0, target.burst / 8) if target.burst > 1 else 0)
                    )
                    mid = f"pump-{target.prefix[1:]}-{n}"
                    out.append(
                        self._send(at, mid, number, target.country, target.price, True, converts)
                    )
                t += target.pause * rng.uniform(0.7, 1.3)
        return out

    def _send(
        self,
        at: float,
        message_id: str,
        number: str,
        country: str,
        price: object,
        pumped: bool,
        converts: float | None,
    ) -> _Event:
        return _Event(
            at,
            next(self._seq),
            "send",
            message_id,
            number,
            country,
            Decimal(str(price)),
            pumped,
            converts,
        )

    async def play(self, guard: Guard) -> Report:
        """Play the traffic through ``guard``; conversions follow the messages sent."""
        report = Report(mode=guard.settings.mode)
        queue = self.traffic()
        heapq.heapify(queue)
        digits = guard.settings.prefix_digits
        while queue:
            event = heapq.heappop(queue)
            self.now = event.at
            if event.kind == "convert":
                await guard.converted(event.message_id)
                continue
            cost = int(event.price * 1_000_000)
            decision = await guard.screen(event.message_id, event.number, event.country, cost)
            rule = decision.verdict.rule if decision.verdict else ""
            report.decisions[event.message_id] = rule
            _count(report, event, prefix_of(event.number, digits), rule)
            if not decision.refused and event.converts_after is not None:
                convert = _Event(
                    event.at + event.converts_after, next(self._seq), "convert", event.message_id
                )
                heapq.heappush(queue, convert)
        return report


def _count(report: Report, event: _Event, prefix: str, rule: str) -> None:
    if not event.pumped:
        report.legit += 1
        if rule:
            report.legit_refused += 1
            report.legit_rules[rule] += 1
            report.legit_cost_refused += event.price
        return
    figures = report.pumped.setdefault(prefix, PrefixFigures(event.country))
    if rule:
        figures.refused_once = True
        figures.refused += 1
        figures.rules[rule] += 1
        figures.cost_saved += event.price
        return
    figures.sent += 1
    figures.cost_sent += event.price
    if not figures.refused_once:
        figures.sent_before_refusal += 1


async def replay(guard: Guard, plan: AttackPlan | None = None) -> Report:
    """Replay ``plan`` (the default attack) through ``guard``, whose clock must be the
    replay's: build the guard with ``clock=Replay.clock`` of the returned replay; see
    ``Replay`` for the two steps apart."""
    run = Replay(plan or AttackPlan())
    guard.clock = run.clock
    return await run.play(guard)
