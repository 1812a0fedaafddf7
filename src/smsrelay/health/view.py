"""``MonitorView``: a ``HealthMonitor`` as the planner reads it (``routing.views.HealthView``).

The planner wants the measured rate (None without receipts: the strategies apply their
own prior), the receipts it rests on, and the breaker's state by name.
"""

from __future__ import annotations

from smsrelay.health.monitor import HealthMonitor
from smsrelay.routing.views import HealthSnapshot

__all__ = ["MonitorView"]


class MonitorView:
    """Reads ``monitor`` for the planner; no side effect (half-open probes are untouched)."""

    def __init__(self, monitor: HealthMonitor) -> None:
        self.monitor = monitor

    def snapshot(self, provider: str, country: str) -> HealthSnapshot:
        """The window's observed delivery rate, its samples, and the breaker's state."""
        window = self.monitor.snapshot(provider, country)
        breaker = self.monitor.status(provider, country)
        return HealthSnapshot(window.observed_rate, window.samples, breaker.state.value)
