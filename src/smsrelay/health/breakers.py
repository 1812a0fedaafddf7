"""Circuit breakers per provider x destination country.

```
            N consecutive failures / M timeouts,
            or delivery collapsed (enough receipts)
  CLOSED ───────────────────────────────────────────▶ OPEN
    ▲                                                  │ cool-down over
    │ a probe was accepted                             ▼
    └──────────────────────────────────────────── HALF_OPEN ──▶ OPEN (a probe failed)
```

Two ways to open. Transport: ``failures`` consecutive transient errors or timeouts, or
``timeouts`` consecutive timeouts (fewer: each cost a whole timeout, and a hung provider
must not make every OTP wait for it). Delivery: the API keeps answering 200 but, over at
least ``min_samples`` receipts of the last ``delivery_window`` seconds, fewer than
``min_delivery_rate`` were delivered, or fewer than ``(1 - max_drop)`` * the key's own
baseline (the judged rate averaged over ``baseline_seconds``). A permanent refusal (bad
number, content) says nothing about the transport: it neither counts nor resets.

Half-open lets ``probes`` sends through at once (a slot is taken by ``allow`` and freed by
``record_send``, or after a cool-down if its outcome never comes); the first accepted
probe closes the breaker, a failed one reopens it. After closing, delivery is judged only
on receipts that came after, so the collapse that opened it does not reopen it.

The planner reads ``status`` (no side effect) to skip or reorder; the dispatcher calls
``allow`` just before it sends (it takes a half-open probe slot) and ``record_send``
after. ``record_receipt`` is called after ``DeliveryHealth.record_receipt``.

State is in-process: each worker opens its own breakers from its own traffic, which is
what a breaker wants (a hung provider shows in every worker within a few sends).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import StrEnum

from prometheus_client import CollectorRegistry, Gauge

from smsrelay.health.delivery import DeliveryHealth, SendOutcome
from smsrelay.health.settings import BreakerSettings
from smsrelay.logging import get_logger

__all__ = ["BreakerState", "BreakerStatus", "CircuitBreakers"]

log = get_logger(__name__)


class BreakerState(StrEnum):
    """Whether a provider x country is sent to."""

    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half_open"


# The gauge's value for each state: a dashboard can alert on > 0.
_GAUGE = {BreakerState.CLOSED: 0, BreakerState.HALF_OPEN: 1, BreakerState.OPEN: 2}


@dataclass(frozen=True, slots=True)
class BreakerStatus:
    """A breaker as the planner and ``route explain`` show it."""

    state: BreakerState
    reason: str | None = None
    # When it entered this state, and (open) when it will let probes through.
    since: float | None = None
    until: float | None = None

    @property
    def sendable(self) -> bool:
        """False while open: the planner skips (or moves last) this candidate."""
        return self.state is not BreakerState.OPEN


@dataclass(slots=True)
class _Breaker:
    state: BreakerState = BreakerState.CLOSED
    reason: str | None = None
    since: float | None = None
    until: float | None = None
    failures: int = 0
    timeouts: int = 0
    probes: list[float] = field(default_factory=list)
    closed_at: float | None = None
    baseline: float | None = None
    judged_at: float | None = None


class CircuitBreakers:
    """All breakers of one process; see the module docstring."""

    def __init__(
        self,
        settings: BreakerSettings,
        delivery: DeliveryHealth | None = None,
        *,
        registry: CollectorRegistry | None = None,
        max_keys: int = 4096,
    ) -> None:
        self.settings = settings
        self.delivery = delivery
        self._max_keys = max_keys
        self._breakers: dict[tuple[str, str], _Breaker] = {}
        self._on_open: list[Callable[[str, str, str], None]] = []
        self._gauge = Gauge(
            "smsrelay_breaker_state",
            "Circuit breaker per provider and country: 0 closed, 1 half-open, 2 open",
            ["provider", "country"],
            registry=registry,
        ) if registry is not None else None  # fmt: skip

    def listen(self, on_open: Callable[[str, str, str], None]) -> None:
        """Call ``on_open(provider, country, reason)`` each time a breaker opens."""
        self._on_open.append(on_open)

    def baseline(self, provider: str, country: str) -> float | None:
        """The key's own delivery baseline (None until delivery was judged)."""
        b = self._breakers.get((provider, country))
        return b.baseline if b is not None else None

    def status(self, provider: str, country: str, now: float) -> BreakerStatus:
        """The breaker's state at ``now`` (an open one past its cool-down reads half-open)."""
        b = self._breakers.get((provider, country))
        if b is None:
            return BreakerStatus(BreakerState.CLOSED)
        self._advance(provider, country, b, now)
        return BreakerStatus(b.state, b.reason, b.since, b.until)

    def allow(self, provider: str, country: str, now: float) -> bool:
        """May one send go now? Half-open: True while a probe slot is free (and takes it)."""
        b = self._breakers.get((provider, country))
        if b is None:
            return True
        self._advance(provider, country, b, now)
        if b.state is BreakerState.CLOSED:
            return True
        if b.state is BreakerState.OPEN:
            return False
        b.probes = [t for t in b.probes if now - t < self.settings.cool_down]
        if len(b.probes) >= self.settings.probes:
            return False
        b.probes.append(now)
        return True

    def record_send(self, provider: str, country: str, outcome: SendOutcome, now: float) -> None:
        """Feed one attempt's outcome."""
        b = self._breaker(provider, country)
        self._advance(provider, country, b, now)
        if outcome is SendOutcome.FAILED:
            if b.probes:
                b.probes.pop(0)
            return
        if b.state is BreakerState.HALF_OPEN:
            if outcome is SendOutcome.SENT:
                self._close(provider, country, b, now)
            else:
                self._open(provider, country, b, now, "a probe failed", self.settings.cool_down)
            return
        self._count(provider, country, b, outcome, now)

    def record_receipt(self, provider: str, country: str, now: float) -> None:
        """Judge delivery after a receipt was fed to the ``DeliveryHealth`` given."""
        b = self._breakers.get((provider, country))
        if self.delivery is None or (b is not None and b.state is not BreakerState.CLOSED):
            return
        b = b or self._breaker(provider, country)
        s = self.settings
        since = max(now - s.delivery_window, b.closed_at if b.closed_at is not None else -math.inf)
        snap = self.delivery.snapshot(provider, country, now, since=since)
        if snap.observed_rate is None or snap.samples < s.min_samples:
            return
        rate = snap.observed_rate
        why = f"delivery {rate:.0%} over {snap.samples} receipts"
        if rate < s.min_delivery_rate:
            reason = f"{why} (below {s.min_delivery_rate:.0%})"
            self._open(provider, country, b, now, reason, s.delivery_cool_down)
        elif b.baseline is not None and rate < b.baseline * (1 - s.max_drop):
            reason = f"{why} (baseline {b.baseline:.0%})"
            self._open(provider, country, b, now, reason, s.delivery_cool_down)
        else:
            self._follow(b, rate, now)

    def _follow(self, b: _Breaker, rate: float, now: float) -> None:
        if b.baseline is None or b.judged_at is None:
            b.baseline = rate
        else:
            weight = 1 - math.exp(-max(now - b.judged_at, 0.0) / self.settings.baseline_seconds)
            b.baseline += weight * (rate - b.baseline)
        b.judged_at = now

    def _count(
        self, provider: str, country: str, b: _Breaker, outcome: SendOutcome, now: float
    ) -> None:
        if outcome is SendOutcome.SENT:
            b.failures = b.timeouts = 0
            return
        b.failures += 1
        b.timeouts = b.timeouts + 1 if outcome is SendOutcome.TIMEOUT else 0
        s = self.settings
        if b.state is BreakerState.CLOSED and b.timeouts >= s.timeouts:
            self._open(provider, country, b, now, f"{b.timeouts} timeouts in a row", s.cool_down)
        elif b.state is BreakerState.CLOSED and b.failures >= s.failures:
            reason = f"{b.failures} transport failures in a row"
            self._open(provider, country, b, now, reason, s.cool_down)

    def _advance(self, provider: str, country: str, b: _Breaker, now: float) -> None:
        if b.state is BreakerState.OPEN and b.until is not None and now >= b.until:
            self._set(provider, country, b, BreakerState.HALF_OPEN, b.reason, now)
            b.probes = []

    def _open(
        self, provider: str, country: str, b: _Breaker, now: float, reason: str, hold: float
    ) -> None:
        self._set(provider, country, b, BreakerState.OPEN, reason, now)
        b.until = now + hold
        b.failures = b.timeouts = 0
        b.probes = []
        log.warning("breaker_open", provider=provider, country=country, reason=reason)
        for listener in self._on_open:
            listener(provider, country, reason)

    def _close(self, provider: str, country: str, b: _Breaker, now: float) -> None:
        self._set(provider, country, b, BreakerState.CLOSED, None, now)
        b.until = None
        b.closed_at = now
        b.failures = b.timeouts = 0
        b.probes = []
        log.info("breaker_closed", provider=provider, country=country)

    def _set(
        self,
        provider: str,
        country: str,
        b: _Breaker,
        state: BreakerState,
        reason: str | None,
        now: float,
    ) -> None:
        b.state, b.reason, b.since = state, reason, now
        if self._gauge is not None:
            self._gauge.labels(provider, country).set(_GAUGE[state])

    def _breaker(self, provider: str, country: str) -> _Breaker:
        key = (provider, country)
        b = self._breakers.get(key)
        if b is None:
            if len(self._breakers) >= self._max_keys:
                self._forget_one_closed()
            b = self._breakers[key] = _Breaker()
        return b

    def _forget_one_closed(self) -> None:
        # Bounded keys: drop the oldest closed breaker (open ones carry a decision).
        for key, b in self._breakers.items():
            if b.state is BreakerState.CLOSED:
                del self._breakers[key]
                return
        del self._breakers[next(iter(self._breakers))]
