"""The delivery health report: per provider x destination country over sliding windows.

Computed from the store, so ``smsrelay health``, ``GET /v1/health/delivery`` and any
process give the same figures: for the messages sent in each window (by the attempt that
sent them), how many were delivered, undelivered or failed by their receipts, how many
still wait, the delivery rate among those decided, the top failure codes (receipts' and
send failures'), and send → delivered-receipt latency p50/p95 (upper edges of the
``LATENCY_EDGES`` histogram buckets, as the breakers' windows measure it). A process
with a ``HealthMonitor`` (a worker) adds its breakers' states.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Protocol

from smsrelay.health.breakers import BreakerStatus
from smsrelay.health.delivery import LATENCY_EDGES, quantile

__all__ = [
    "DEFAULT_WINDOWS",
    "DeliveryReads",
    "FailureGroup",
    "KeyHealth",
    "OutcomeGroup",
    "WindowFigures",
    "build_report",
    "parse_window",
    "to_document",
    "to_table",
    "windows_since",
]

DEFAULT_WINDOWS = ("5m", "1h", "24h")
_WINDOW = re.compile(r"^(\d{1,4})([smhd])$")
_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400}
TOP_CODES = 3


def parse_window(text: str) -> timedelta:
    """``30s``, ``5m``, ``1h``, ``7d`` (at most 31 days); ``ValueError`` otherwise."""
    match = _WINDOW.match(text.strip())
    if not match:
        raise ValueError(f"window {text[:16]!r}: use 30s, 5m, 1h or 7d")
    span = timedelta(seconds=int(match.group(1)) * _SECONDS[match.group(2)])
    if not timedelta(0) < span <= timedelta(days=31):
        raise ValueError(f"window {text[:16]!r}: between 1s and 31d")
    return span


def windows_since(since: str | None, now: datetime) -> dict[str, datetime]:
    """Window name → its start: ``--since`` alone, or ``DEFAULT_WINDOWS``."""
    names = (since.strip(),) if since else DEFAULT_WINDOWS
    return {name: now - parse_window(name) for name in names}


@dataclass(frozen=True, slots=True)
class OutcomeGroup:
    """Messages a provider sent to a country, by their state now (the store's grouping).

    ``code``: the receipt's failure code (undelivered/failed); ``bucket``: the latency
    histogram bucket of the delivered receipt (delivered only).
    """

    provider: str
    country: str
    state: str
    code: str | None
    bucket: int | None
    count: int


@dataclass(frozen=True, slots=True)
class FailureGroup:
    """Attempts that failed at the provider (``outcome``: failed, transient, unknown)."""

    provider: str
    country: str
    outcome: str
    code: str | None
    count: int


class DeliveryReads(Protocol):
    """What the report reads (``smsrelay.store.health.HealthReads``)."""

    async def outcomes(
        self, since: datetime, provider: str | None, country: str | None
    ) -> list[OutcomeGroup]:
        """Messages sent since ``since``, grouped by provider, country and state now."""

    async def send_failures(
        self, since: datetime, provider: str | None, country: str | None
    ) -> list[FailureGroup]:
        """Attempts that failed at their provider since ``since``, grouped."""


@dataclass(slots=True)
class WindowFigures:
    """One provider x country over one window."""

    sent: int = 0
    delivered: int = 0
    undelivered: int = 0
    failed: int = 0
    send_failures: int = 0
    codes: Counter[str] = field(default_factory=Counter)
    latency: list[int] = field(default_factory=lambda: [0] * (len(LATENCY_EDGES) + 1))

    @property
    def decided(self) -> int:
        """Messages whose receipts decided delivered or not."""
        return self.delivered + self.undelivered + self.failed

    @property
    def delivery_rate(self) -> float | None:
        """Delivered among the decided; None before any receipt."""
        return self.delivered / self.decided if self.decided else None

    def add(self, other: WindowFigures) -> None:
        """Fold ``other`` into these figures (the metrics' overflow series)."""
        self.sent += other.sent
        self.delivered += other.delivered
        self.undelivered += other.undelivered
        self.failed += other.failed
        self.send_failures += other.send_failures
        self.codes.update(other.codes)
        self.latency = [a + b for a, b in zip(self.latency, other.latency, strict=True)]

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready figures."""
        return {
            "sent": self.sent,
            "delivered": self.delivered,
            "undelivered": self.undelivered,
            "failed": self.failed,
            "pending": max(self.sent - self.decided, 0),
            "send_failures": self.send_failures,
            "delivery_rate": round(self.delivery_rate, 4)
            if self.delivery_rate is not None
            else None,
            "top_failure_codes": [
                {"code": code, "count": n} for code, n in self.codes.most_common(TOP_CODES)
            ],
            "latency_p50": quantile(self.latency, 0.50),
            "latency_p95": quantile(self.latency, 0.95),
        }


@dataclass(slots=True)
class KeyHealth:
    """One provider x country: its figures per window, and its breaker where known."""

    provider: str
    country: str
    windows: dict[str, WindowFigures] = field(default_factory=dict)
    breaker: BreakerStatus | None = None

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready."""
        b = self.breaker
        return {
            "provider": self.provider,
            "country": self.country,
            "breaker": b.state.value if b else None,
            "breaker_reason": b.reason if b else None,
            "windows": {name: w.as_dict() for name, w in self.windows.items()},
        }


class BreakerReader(Protocol):
    """A process's breakers (``HealthMonitor.status``)."""

    def status(self, provider: str, country: str) -> BreakerStatus:
        """The breaker now."""


async def build_report(
    reads: DeliveryReads,
    windows: Mapping[str, datetime],
    *,
    provider: str | None = None,
    country: str | None = None,
    breakers: BreakerReader | None = None,
) -> list[KeyHealth]:
    """Each provider x country seen in any window, sorted; ``windows``: name → since."""
    keys: dict[tuple[str, str], KeyHealth] = {}
    for name, since in windows.items():
        for group in await reads.outcomes(since, provider, country):
            _outcome(_figures(keys, group.provider, group.country, name), group)
        for failure in await reads.send_failures(since, provider, country):
            figures = _figures(keys, failure.provider, failure.country, name)
            figures.send_failures += failure.count
            figures.codes[failure.code or failure.outcome] += failure.count
    for key in keys.values():
        for name in windows:
            key.windows.setdefault(name, WindowFigures())
        if breakers is not None:
            key.breaker = breakers.status(key.provider, key.country)
    return [keys[k] for k in sorted(keys)]


def _figures(
    keys: dict[tuple[str, str], KeyHealth], provider: str, country: str, window: str
) -> WindowFigures:
    key = keys.setdefault((provider, country), KeyHealth(provider, country))
    return key.windows.setdefault(window, WindowFigures())


def _outcome(figures: WindowFigures, group: OutcomeGroup) -> None:
    figures.sent += group.count
    if group.state == "delivered":
        figures.delivered += group.count
        if group.bucket is not None:
            figures.latency[min(max(group.bucket, 0), len(LATENCY_EDGES))] += group.count
    elif group.state in ("undelivered", "failed"):
        if group.state == "undelivered":
            figures.undelivered += group.count
        else:
            figures.failed += group.count
        figures.codes[group.code or group.state] += group.count


def to_document(
    rows: Sequence[KeyHealth], windows: Mapping[str, datetime], now: datetime
) -> dict[str, Any]:
    """The report as JSON-ready data (``--json`` and ``GET /v1/health/delivery``)."""
    return {
        "generated_at": now.isoformat(),
        "windows": {name: start.isoformat() for name, start in windows.items()},
        "rows": [row.as_dict() for row in rows],
    }


COLUMNS = (
    "provider", "country", "window", "sent", "delivered", "undelivered", "failed",
    "pending", "rate", "p50", "p95", "send_fail", "top_codes", "breaker",
)  # fmt: skip


def to_table(rows: Sequence[KeyHealth]) -> str:
    """One line per provider x country x window, aligned."""
    cells = [
        _line(row, name, figures.as_dict()) for row in rows for name, figures in row.windows.items()
    ]
    widths = [max([len(c), *(len(line[i]) for line in cells)]) for i, c in enumerate(COLUMNS)]
    lines = ["  ".join(c.ljust(w) for c, w in zip(COLUMNS, widths, strict=True))]
    lines += ["  ".join(v.ljust(w) for v, w in zip(line, widths, strict=True)) for line in cells]
    return "\n".join(line.rstrip() for line in lines)


def _line(row: KeyHealth, window: str, f: dict[str, Any]) -> list[str]:
    rate = f"{f['delivery_rate']:.1%}" if f["delivery_rate"] is not None else "-"
    codes = ",".join(f"{c['code']}:{c['count']}" for c in f["top_failure_codes"]) or "-"
    return [
        row.provider, row.country, window, str(f["sent"]), str(f["delivered"]),
        str(f["undelivered"]), str(f["failed"]), str(f["pending"]), rate,
        _seconds(f["latency_p50"]), _seconds(f["latency_p95"]), str(f["send_failures"]),
        codes, row.breaker.state.value if row.breaker else "-",
    ]  # fmt: skip


def _seconds(value: float | None) -> str:
    return "-" if value is None else f"{value:g}s"
