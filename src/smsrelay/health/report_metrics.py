"""Prometheus series of the delivery health report, with a bounded label set.

Every ``health.report_interval`` seconds a worker computes the report for the windows
``METRIC_WINDOWS`` and sets, per provider x country:
``smsrelay_delivery_sent{provider,country,window}``,
``smsrelay_delivery_rate{provider,country,window}`` (only once a receipt decided) and
``smsrelay_delivery_latency_seconds{provider,country,window,quantile}`` (0.5, 0.95).

Labels are bounded: the ``health.metrics_max_keys`` keys that sent the most in the
widest window have their own series; the rest are summed into ``provider="other",
country="other"``. Series of keys no longer reported are removed at each refresh.
Every worker reports the same figures (they come from the store): aggregate with
``max`` or pick one instance, never ``sum``.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Sequence
from datetime import UTC, datetime

from prometheus_client import CollectorRegistry, Gauge

from smsrelay.errors import StoreError
from smsrelay.health.delivery import quantile
from smsrelay.health.report import DeliveryReads, KeyHealth, WindowFigures, build_report
from smsrelay.health.report import windows_since as _windows
from smsrelay.logging import get_logger

__all__ = ["METRIC_WINDOWS", "OVERFLOW", "DeliveryGauges", "GaugeRefresher"]

log = get_logger(__name__)

METRIC_WINDOWS = ("5m", "1h")
OVERFLOW = "other"


class DeliveryGauges:
    """The report's gauges; ``refresh`` sets them from report rows."""

    def __init__(self, registry: CollectorRegistry, max_keys: int) -> None:
        self.max_keys = max_keys
        labels = ["provider", "country", "window"]
        self.sent = Gauge(
            "smsrelay_delivery_sent",
            "Messages sent in the window (store), per provider and country",
            labels,
            registry=registry,
        )
        self.rate = Gauge(
            "smsrelay_delivery_rate",
            "Delivered among messages whose receipts decided, sent in the window",
            labels,
            registry=registry,
        )
        self.latency = Gauge(
            "smsrelay_delivery_latency_seconds",
            "Send to delivered-receipt time, quantile over the window (bucket upper edge)",
            [*labels, "quantile"],
            registry=registry,
        )

    def refresh(self, rows: Sequence[KeyHealth]) -> None:
        """Replace every series by those of ``rows`` (capped, the rest in ``other``)."""
        for gauge in (self.sent, self.rate, self.latency):
            gauge.clear()
        for (provider, country), windows in self._capped(rows).items():
            for window, figures in windows.items():
                self._set(provider, country, window, figures)

    def _capped(self, rows: Sequence[KeyHealth]) -> dict[tuple[str, str], dict[str, WindowFigures]]:
        def volume(row: KeyHealth) -> int:
            return max((w.sent for w in row.windows.values()), default=0)

        ranked = sorted(rows, key=lambda r: (-volume(r), r.provider, r.country))
        out = {(r.provider, r.country): dict(r.windows) for r in ranked[: self.max_keys]}
        rest = ranked[self.max_keys :]
        if rest:
            merged: dict[str, WindowFigures] = {}
            for row in rest:
                for window, figures in row.windows.items():
                    merged.setdefault(window, WindowFigures()).add(figures)
            out[OVERFLOW, OVERFLOW] = merged
        return out

    def _set(self, provider: str, country: str, window: str, f: WindowFigures) -> None:
        self.sent.labels(provider, country, window).set(f.sent)
        if f.delivery_rate is not None:
            self.rate.labels(provider, country, window).set(f.delivery_rate)
        for q in (0.5, 0.95):
            value = quantile(f.latency, q)
            if value is not None:
                self.latency.labels(provider, country, window, str(q)).set(value)


class GaugeRefresher:
    """Recomputes the report for ``METRIC_WINDOWS`` every ``interval`` seconds."""

    def __init__(self, reads: DeliveryReads, gauges: DeliveryGauges, interval: float) -> None:
        self.reads = reads
        self.gauges = gauges
        self.interval = interval
        self.refreshes = 0  # a positive signal for tests
        self._task: asyncio.Task[None] | None = None

    async def refresh(self) -> None:
        """Once, now."""
        rows = await build_report(self.reads, _windows_all(datetime.now(UTC)))
        self.gauges.refresh(rows)
        self.refreshes += 1

    def start(self) -> None:
        """Refresh in the background until ``close``."""
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name="health-report-gauges")

    async def close(self) -> None:
        """Stop refreshing."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    async def _run(self) -> None:
        while True:
            try:
                await self.refresh()
            except StoreError as exc:  # the store is down: the series keep their last values
                log.warning("health_gauges_deferred", error=type(exc).__name__)
            await asyncio.sleep(self.interval)


def _windows_all(now: datetime) -> dict[str, datetime]:
    out: dict[str, datetime] = {}
    for name in METRIC_WINDOWS:
        out.update(_windows(name, now))
    return out
