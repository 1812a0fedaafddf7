"""Delivery health: how well each provider delivers to each country, over a sliding window.

Fed by what happens: ``record_send`` after each provider attempt (the dispatcher) and
``record_receipt`` for each final delivery receipt (the receipt rules). Read by the
planner as a ``HealthSnapshot``: the delivery rate with its sample size, a Beta prior so a
provider with little data still has a usable rate (``cost_per_delivered`` needs a number
from the first message), receipt latency p50/p95 and failure counts.

Memory is bounded: each provider x country key holds at most ``window / bucket`` time
buckets of counters and a fixed latency histogram, and at most ``max_keys`` keys are kept
(the least recently fed is dropped first).

Clocks: ``at`` and ``now`` are seconds on one clock of the caller's choice (``time.time()``
in a worker; a fake clock in tests). Buckets are aligned on it, so feed one clock only.

Several workers: this state is in-process. Each worker learns from its own sends and from
the receipts it is fed; with N workers each sees about 1/N of the traffic, so its rates
carry fewer samples (the prior weighs more, a breaker needs longer to reach
``min_samples``) but are unbiased. Receipts must reach the worker that judges (e.g. the
receipt event on the bus), not only the API process that received them.
"""

from __future__ import annotations

import bisect
import math
from collections import OrderedDict
from dataclasses import dataclass, field
from enum import StrEnum

__all__ = [
    "LATENCY_EDGES",
    "DeliveryHealth",
    "HealthSnapshot",
    "SendOutcome",
    "quantile",
]

# Upper edges (seconds) of the receipt-latency histogram; the last bucket is open.
LATENCY_EDGES: tuple[float, ...] = (
    0.5, 1, 2, 3, 5, 7.5, 10, 15, 20, 30, 45, 60, 90, 120, 180, 300, 600, 1200, 3600,
)  # fmt: skip


class SendOutcome(StrEnum):
    """What one provider attempt came to, as delivery health counts it."""

    SENT = "sent"  # the provider accepted the message
    FAILED = "failed"  # refused for the recipient's sake (bad number): not the provider
    TRANSIENT = "transient"  # the provider failed it: transport, server, account
    TIMEOUT = "timeout"  # no answer in time (the outcome is unknown)


@dataclass(frozen=True, slots=True)
class HealthSnapshot:
    """One provider x country over the window, as the planner reads it.

    ``delivery_rate`` is the posterior mean under a Beta prior: with no receipts it is the
    prior rate, and it moves toward ``observed_rate`` as ``samples`` grow.
    """

    provider: str
    country: str
    sent: int
    failed: int
    transient: int
    timeouts: int
    delivered: int
    undelivered: int
    delivery_rate: float
    observed_rate: float | None
    latency_p50: float | None
    latency_p95: float | None
    window_seconds: float

    @property
    def samples(self) -> int:
        """Final receipts the delivery rate rests on."""
        return self.delivered + self.undelivered

    @property
    def attempts(self) -> int:
        """Provider attempts in the window, whatever their outcome."""
        return self.sent + self.failed + self.transient + self.timeouts


@dataclass(slots=True)
class _Bucket:
    start: float
    sent: int = 0
    failed: int = 0
    transient: int = 0
    timeouts: int = 0
    delivered: int = 0
    undelivered: int = 0
    latency: list[int] = field(default_factory=lambda: [0] * (len(LATENCY_EDGES) + 1))


class DeliveryHealth:
    """Sliding-window counters per provider x country; see the module docstring."""

    def __init__(
        self,
        *,
        window: float = 600.0,
        bucket: float = 30.0,
        prior_rate: float = 0.9,
        prior_weight: float = 10.0,
        max_keys: int = 4096,
    ) -> None:
        if not (0 < bucket <= window):
            raise ValueError("need 0 < bucket <= window")
        if not (0.0 < prior_rate < 1.0) or prior_weight <= 0:
            raise ValueError("need 0 < prior_rate < 1 and prior_weight > 0")
        self.window = window
        self.bucket = bucket
        self._alpha = prior_rate * prior_weight
        self._beta = (1.0 - prior_rate) * prior_weight
        self._max_buckets = math.ceil(window / bucket)
        self._max_keys = max_keys
        self._keys: OrderedDict[tuple[str, str], list[_Bucket]] = OrderedDict()

    def record_send(self, provider: str, country: str, outcome: SendOutcome, at: float) -> None:
        """Count one provider attempt and its outcome."""
        b = self._current(provider, country, at)
        match outcome:
            case SendOutcome.SENT:
                b.sent += 1
            case SendOutcome.FAILED:
                b.failed += 1
            case SendOutcome.TRANSIENT:
                b.transient += 1
            case SendOutcome.TIMEOUT:
                b.timeouts += 1

    def record_receipt(
        self,
        provider: str,
        country: str,
        delivered: bool,
        latency_seconds: float | None,
        at: float,
    ) -> None:
        """Count one final receipt (delivered, or undelivered/failed) and its send→receipt time."""
        b = self._current(provider, country, at)
        if delivered:
            b.delivered += 1
        else:
            b.undelivered += 1
        if latency_seconds is not None and latency_seconds >= 0:
            b.latency[bisect.bisect_left(LATENCY_EDGES, latency_seconds)] += 1

    def snapshot(
        self, provider: str, country: str, now: float, *, since: float | None = None
    ) -> HealthSnapshot:
        """The window ending at ``now`` (from ``since`` when later, at bucket granularity)."""
        start = now - self.window
        if since is not None:
            # A bucket counts when it began at or after `since`'s own bucket.
            start = max(start, self._align(since) - 1e-9)
        buckets = [b for b in self._keys.get((provider, country), ()) if b.start > start - 1e-9]
        total = _Bucket(start=start)
        for b in buckets:
            _add(total, b)
        return self._snapshot(provider, country, total)

    def keys(self) -> list[tuple[str, str]]:
        """The provider x country keys held, least recently fed first."""
        return list(self._keys)

    def _snapshot(self, provider: str, country: str, t: _Bucket) -> HealthSnapshot:
        n = t.delivered + t.undelivered
        return HealthSnapshot(
            provider=provider,
            country=country,
            sent=t.sent,
            failed=t.failed,
            transient=t.transient,
            timeouts=t.timeouts,
            delivered=t.delivered,
            undelivered=t.undelivered,
            delivery_rate=(t.delivered + self._alpha) / (n + self._alpha + self._beta),
            observed_rate=t.delivered / n if n else None,
            latency_p50=quantile(t.latency, 0.50),
            latency_p95=quantile(t.latency, 0.95),
            window_seconds=self.window,
        )

    def _align(self, at: float) -> float:
        return math.floor(at / self.bucket) * self.bucket

    def _current(self, provider: str, country: str, at: float) -> _Bucket:
        key = (provider, country)
        buckets = self._keys.get(key)
        if buckets is None:
            buckets = self._keys[key] = []
            while len(self._keys) > self._max_keys:
                self._keys.popitem(last=False)
        else:
            self._keys.move_to_end(key)
        start = self._align(at)
        if buckets and buckets[-1].start >= start:
            # Late or same-bucket events land in the newest bucket: order does not matter
            # for counters, and a clock that steps back must not grow the list.
            return buckets[-1]
        buckets.append(_Bucket(start=start))
        horizon = start - self.window
        while buckets and (buckets[0].start <= horizon or len(buckets) > self._max_buckets):
            buckets.pop(0)
        return buckets[-1]


def _add(total: _Bucket, b: _Bucket) -> None:
    total.sent += b.sent
    total.failed += b.failed
    total.transient += b.transient
    total.timeouts += b.timeouts
    total.delivered += b.delivered
    total.undelivered += b.undelivered
    for i, count in enumerate(b.latency):
        total.latency[i] += count


def quantile(histogram: list[int], q: float) -> float | None:
    """The upper edge of the bucket holding the q-quantile (the open bucket: its lower edge)."""
    n = sum(histogram)
    if not n:
        return None
    rank = q * n
    seen = 0
    for i, count in enumerate(histogram):
        seen += count
        if seen >= rank and count:
            return LATENCY_EDGES[min(i, len(LATENCY_EDGES) - 1)]
    return LATENCY_EDGES[-1]  # pragma: no cover - the loop always reaches rank
