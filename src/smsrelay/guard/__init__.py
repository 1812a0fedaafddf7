"""The pumping guard: velocity limits, budgets and conversion-driven blocks for OTPs.

``settings`` (the ``guard:`` block), ``state`` (counters and blocks: the protocol and
its in-process form), ``redis_state`` (the same in Redis, shared by every worker),
``rules`` (figures → verdict, pure), ``guard`` (screening, metrics, logs), ``build``
(wiring) and ``replay`` (an attack replayed against it, with its report).
"""

from __future__ import annotations

from smsrelay.guard.build import build_guard
from smsrelay.guard.guard import Decision, Guard, GuardMetrics, prefix_of
from smsrelay.guard.rules import RULES, Verdict, judge
from smsrelay.guard.settings import GuardMode, GuardSettings
from smsrelay.guard.state import Block, Figures, GuardState, LocalGuardState, Observation

__all__ = [
    "RULES",
    "Block",
    "Decision",
    "Figures",
    "Guard",
    "GuardMetrics",
    "GuardMode",
    "GuardSettings",
    "GuardState",
    "LocalGuardState",
    "Observation",
    "Verdict",
    "build_guard",
    "judge",
    "prefix_of",
]
