"""``AlertWatch``: turns a worker's health into alerts (see ``smsrelay.health.alerts``).

It listens to its monitor's breakers (``breaker_open``) and, after each read of new
receipts, compares each key's recent window with its own baseline (``delivery_drop``,
``latency_rise``). The delivery baseline is the breaker's (the judged rate averaged over
``health.breakers.baseline_seconds``); the latency baseline is the recent p50 averaged
the same way, followed only while it is not alerting.
"""

from __future__ import annotations

import math
from collections.abc import Callable

from smsrelay.health.alerts import Action, Alert, AlertSink, AlertType
from smsrelay.health.breakers import BreakerState
from smsrelay.health.delivery import HealthSnapshot
from smsrelay.health.monitor import HealthMonitor
from smsrelay.health.settings import AlertSettings

__all__ = ["AlertWatch"]


class AlertWatch:
    """Alerts for one monitor; ``alternatives(provider, country)``: the route's providers."""

    def __init__(
        self,
        monitor: HealthMonitor,
        sink: AlertSink,
        settings: AlertSettings,
        alternatives: Callable[[str, str], list[str]],
    ) -> None:
        self.monitor = monitor
        self.sink = sink
        self.settings = settings
        self.alternatives = alternatives
        self._latency: dict[tuple[str, str], tuple[float, float]] = {}  # p50 baseline, at
        monitor.breakers.listen(self.breaker_opened)

    def breaker_opened(self, provider: str, country: str, reason: str) -> None:
        """A breaker opened: say why, with the recent figures, and where traffic goes."""
        recent = self._recent(provider, country)
        figures = self._delivery_figures(provider, country, recent)
        self._fire(AlertType.BREAKER_OPEN, provider, country, figures, reason)

    def check(self) -> None:
        """Compare every key's recent window with its baseline (after each receipt read)."""
        held = self.monitor.delivery.keys()  # a list copy: feeding cannot change it
        for provider, country in held:
            recent = self._recent(provider, country)
            self._check_delivery(provider, country, recent)
            self._check_latency(provider, country, recent)

    def _recent(self, provider: str, country: str) -> HealthSnapshot:
        now = self.monitor.clock()
        since = now - self.settings.window
        return self.monitor.delivery.snapshot(provider, country, now, since=since)

    def _check_delivery(self, provider: str, country: str, recent: HealthSnapshot) -> None:
        baseline = self.monitor.breakers.baseline(provider, country)
        rate = recent.observed_rate
        if baseline is None or rate is None or recent.samples < self.settings.min_samples:
            return
        if rate < baseline * (1 - self.settings.drop):
            reason = f"delivery {rate:.0%} over the last {self.settings.window:g} s"
            reason += f" against its baseline {baseline:.0%}"
            figures = self._delivery_figures(provider, country, recent)
            self._fire(AlertType.DELIVERY_DROP, provider, country, figures, reason)

    def _check_latency(self, provider: str, country: str, recent: HealthSnapshot) -> None:
        p50 = recent.latency_p50
        if p50 is None or recent.delivered < self.settings.min_samples:
            return
        key, now = (provider, country), self.monitor.clock()
        held = self._latency.get(key)
        if held is None:
            self._latency[key] = (p50, now)
            return
        base, at = held
        if p50 >= max(base * self.settings.latency_rise, self.settings.min_latency):
            reason = f"receipt p50 {p50:g} s against its baseline {base:g} s"
            figures: dict[str, float | int | str | None] = {
                "latency_p50": p50,
                "latency_p95": recent.latency_p95,
                "baseline_p50": round(base, 3),
                "samples": recent.delivered,
                "window_seconds": self.settings.window,
            }
            self._fire(AlertType.LATENCY_RISE, provider, country, figures, reason)
            return
        horizon = self.monitor.breakers.settings.baseline_seconds
        weight = 1 - math.exp(-max(now - at, 0.0) / horizon)
        self._latency[key] = (base + weight * (p50 - base), now)

    def _delivery_figures(
        self, provider: str, country: str, recent: HealthSnapshot
    ) -> dict[str, float | int | str | None]:
        baseline = self.monitor.breakers.baseline(provider, country)
        rate = recent.observed_rate
        return {
            "delivery_rate": round(rate, 4) if rate is not None else None,
            "baseline": round(baseline, 4) if baseline is not None else None,
            "samples": recent.samples,
            "sent": recent.sent,
            "transient": recent.transient,
            "timeouts": recent.timeouts,
            "window_seconds": self.settings.window,
        }

    def _fire(
        self,
        kind: AlertType,
        provider: str,
        country: str,
        figures: dict[str, float | int | str | None],
        reason: str,
    ) -> None:
        action, routed_to = self._action(provider, country)
        alert = Alert(
            type=kind,
            provider=provider,
            country=country,
            figures=figures,
            action=action,
            routed_to=routed_to,
            reason=reason,
        )
        self.sink.publish(alert)

    def _action(self, provider: str, country: str) -> tuple[Action, list[str]]:
        if self.monitor.status(provider, country).state is not BreakerState.OPEN:
            return "none", []
        others = [p for p in self.alternatives(provider, country) if p != provider]
        sendable = [p for p in others if self.monitor.status(p, country).sendable]
        return ("routed_away", sendable) if sendable else ("nothing_left", [])
