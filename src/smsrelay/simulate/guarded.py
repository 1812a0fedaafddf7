"""The pumping guard of a simulated run, recording each decision for the report.

The run's guard keeps its state in this process (``LocalGuardState``): the simulation has
one worker, and its clock is the wall clock with the guard's windows divided by
``time_scale`` (``Scenario.guard_settings``). Each screened OTP is recorded with the
verdict (in ``monitor`` mode: what would have been refused) and its estimated cost.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from smsrelay.guard.guard import Decision, Guard, GuardMetrics
from smsrelay.guard.settings import GuardSettings
from smsrelay.guard.state import LocalGuardState

__all__ = ["RecordingGuard", "Screened"]


@dataclass(frozen=True, slots=True)
class Screened:
    """One OTP the guard screened: its rule (None: allowed) and whether it was refused."""

    message_id: str
    prefix: str
    rule: str | None
    refused: bool
    cost_micros: int
    wall: float


class RecordingGuard(Guard):
    """A guard with in-process state that remembers every decision, in order."""

    def __init__(self, settings: GuardSettings, metrics: GuardMetrics | None = None) -> None:
        super().__init__(settings, LocalGuardState(settings), metrics)
        self.screened: list[Screened] = []

    async def screen(
        self, message_id: str, number: str, country: str, cost_micros: int
    ) -> Decision:
        """Screen as the guard does, and record the decision."""
        decision = await super().screen(message_id, number, country, cost_micros)
        rule = decision.verdict.rule if decision.verdict is not None else None
        self.screened.append(
            Screened(message_id, decision.prefix, rule, decision.refused, cost_micros, time.time())
        )
        return decision
