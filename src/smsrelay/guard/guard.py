"""The pumping guard: screens each ``kind: otp`` message before it is sent.

``Guard.screen`` counts the OTP (one call to the state: one Redis round trip), judges it
by the rules, records a block when the conversion rule says so, counts the decision in
``smsrelay_guard_decisions_total{rule,action,mode}`` and logs every refusal with the
prefix (never the number). In ``monitor`` mode it decides and records the same way and
the message is sent anyway (action ``monitor``); in ``enforce`` mode the dispatcher ends
the message ``rejected`` with the verdict's code and figure.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import ROUND_CEILING, Decimal

from prometheus_client import CollectorRegistry, Counter

from smsrelay.guard.rules import Verdict, judge
from smsrelay.guard.settings import GuardSettings
from smsrelay.guard.state import Block, GuardState, Observation
from smsrelay.logging import get_logger
from smsrelay.models import EventError, Kind, SendRequest

__all__ = ["Decision", "Guard", "GuardMetrics", "prefix_of"]

log = get_logger(__name__)


def prefix_of(number: str, digits: int) -> str:
    """``number`` without its last ``digits`` digits: the guard's unit of destination."""
    return number[: max(1, len(number) - digits)]


class GuardMetrics:
    """Decisions, blocks and Redis fallbacks; labels from fixed sets only."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.decisions = Counter(
            "smsrelay_guard_decisions",
            "OTPs screened by the pumping guard, by rule (none: allowed), action and mode",
            ["rule", "action", "mode"],
            registry=registry,
        )
        self.blocks = Counter(
            "smsrelay_guard_blocks",
            "Prefix blocks the pumping guard recorded, by rule",
            ["rule"],
            registry=registry,
        )
        self.fallbacks = Counter(
            "smsrelay_guard_fallback",
            "Times the guard used its in-process state because Redis failed",
            registry=registry,
        )


@dataclass(frozen=True, slots=True)
class Decision:
    """What the guard decided for one OTP; ``refused``: do not send it."""

    verdict: Verdict | None
    refused: bool
    prefix: str
    block: Block | None = None

    @property
    def error(self) -> EventError | None:
        """The error a refused message ends with."""
        if self.verdict is None or not self.refused:
            return None
        return EventError(code=self.verdict.code, message=self.verdict.detail, retryable=False)


class Guard:
    """Screens OTPs and takes conversion feedback; see the module docstring."""

    def __init__(
        self,
        settings: GuardSettings,
        state: GuardState,
        metrics: GuardMetrics | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.settings = settings
        self.state = state
        self.metrics = metrics or GuardMetrics()
        self.clock = clock

    async def refusal(
        self, request: SendRequest, cost: Decimal | None, currency: str | None
    ) -> EventError | None:
        """The error a blocked request ends with (enforce mode), or None: send it.

        Only ``kind: otp`` is screened; ``cost`` is the message's estimated cost in
        ``currency`` (counted against the budget when that is its currency).
        """
        if request.kind is not Kind.OTP:
            return None
        micros = (
            _micros(cost) if cost is not None and currency == self.settings.prefix.currency else 0
        )
        decision = await self.screen(request.id, request.to, request.country, micros)
        return decision.error

    async def screen(
        self, message_id: str, number: str, country: str, cost_micros: int
    ) -> Decision:
        """Count one OTP, judge it, record and report the decision."""
        now = self.clock()
        prefix = prefix_of(number, self.settings.prefix_digits)
        seen = Observation(message_id, number, prefix, country, cost_micros, now)
        figures = await self.state.observe(seen)
        verdict = judge(figures, self.settings, prefix, country)
        block = None
        if verdict is not None and verdict.rule != "blocked" and figures.counted:
            # Neither judged for conversion nor credited: it is not sent (or, in monitor
            # mode, would not be). Only refusals pay this second call.
            await self.state.refused(seen)
        if verdict is not None and verdict.block:
            block = await self.state.block(prefix, verdict.rule, verdict.detail, now)
            self.metrics.blocks.labels(verdict.rule).inc()
            log.warning(
                "guard_prefix_blocked",
                prefix=prefix,
                country=country,
                rule=verdict.code,
                until=datetime.fromtimestamp(block.until, UTC).isoformat(timespec="seconds"),
                strikes=block.strikes,
                detail=verdict.detail,
            )
        return self._decided(message_id, prefix, country, verdict, block)

    def _decided(
        self,
        message_id: str,
        prefix: str,
        country: str,
        verdict: Verdict | None,
        block: Block | None,
    ) -> Decision:
        mode = self.settings.mode
        if verdict is None:
            self.metrics.decisions.labels("none", "allow", mode).inc()
            return Decision(None, False, prefix)
        refused = mode == "enforce"
        action = "refuse" if refused else "monitor"
        self.metrics.decisions.labels(verdict.rule, action, mode).inc()
        log.info(
            "guard_refused" if refused else "guard_would_refuse",
            id=message_id,
            prefix=prefix,
            country=country,
            rule=verdict.code,
            detail=verdict.detail,
        )
        return Decision(verdict, refused, prefix, block)

    async def converted(self, message_id: str) -> bool:
        """Credit a used code (feedback, approved check) to its prefix; False if unknown."""
        return await self.state.converted(message_id, self.clock())

    async def blocks(self) -> list[Block]:
        """The prefix blocks in force."""
        return await self.state.blocks(self.clock())

    async def unblock(self, prefix: str) -> bool:
        """Lift a prefix's block (and forget its repeats); False if it had none."""
        lifted = await self.state.unblock(prefix, self.clock())
        log.info("guard_prefix_unblocked", prefix=prefix, lifted=lifted)
        return lifted

    async def close(self) -> None:
        """Release the state's connections."""
        await self.state.close()


def _micros(amount: Decimal) -> int:
    return int((amount * 1_000_000).to_integral_value(rounding=ROUND_CEILING))
