"""Delivery health: sliding-window rates per provider x country (``delivery``) and circuit
breakers (``breakers``), fed by send outcomes and receipts, read by the planner."""

from __future__ import annotations

from smsrelay.health.breakers import BreakerState, BreakerStatus, CircuitBreakers
from smsrelay.health.delivery import DeliveryHealth, HealthSnapshot, SendOutcome
from smsrelay.health.monitor import HealthMonitor, outcome_of
from smsrelay.health.settings import BreakerSettings, HealthSettings, WindowSettings

__all__ = [
    "BreakerSettings",
    "BreakerState",
    "BreakerStatus",
    "CircuitBreakers",
    "DeliveryHealth",
    "HealthMonitor",
    "HealthSettings",
    "HealthSnapshot",
    "SendOutcome",
    "WindowSettings",
    "outcome_of",
]
