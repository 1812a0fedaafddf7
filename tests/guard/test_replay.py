"""An attack replayed against the guard on the shared Redis: the issue's targets."""

from __future__ import annotations

import uuid

from smsrelay.guard.replay import AttackPlan, Replay, Report
from tests.guard.conftest import redis_guard

# Half an hour of legitimate traffic, then half an hour of it mixed with pumping.
PLAN = AttackPlan(seconds=3600.0, legit_per_second=0.5, attack_start=1800.0, attack_seconds=1800.0)


async def _replay(mode: str, prefix: str) -> Report:
    run = Replay(PLAN)
    # A loaded machine must not time Redis out: the fallback would judge other figures.
    guard = redis_guard(run.clock, prefix, redis_timeout=10.0, mode=mode)  # type: ignore[arg-type]
    try:
        report = await run.play(guard)
        assert guard.metrics.fallbacks._value.get() == 0, "Redis timed out: replay not comparable"
        return report
    finally:
        await guard.close()


async def test_pumped_prefixes_are_stopped_and_legitimate_otps_pass(redis_prefix: str) -> None:
    """Each pumped prefix is refused within 100 sends, at most 0.5 % of legitimate OTPs are
    refused, and monitor mode reports the same decisions while refusing nothing."""
    enforce = await _replay("enforce", redis_prefix)
    # Its own keys (under the fixture's prefix, deleted with them).
    monitor_prefix = f"{redis_prefix}monitor-{uuid.uuid4().hex[:6]}:"
    monitor = await _replay("monitor", monitor_prefix)
    report = "\n".join(enforce.lines())
    assert len(enforce.pumped) == len(PLAN.pumped), report
    for prefix, figures in enforce.pumped.items():
        assert figures.refused > 0 and figures.sent_before_refusal <= 100, (prefix, report)
        assert figures.sent <= 100, (prefix, report)
    assert enforce.legit > 1000 and enforce.legit_refused_share <= 0.005, report
    assert enforce.cost_saved > enforce.cost_pumped * 9 / 10, report
    differing = [m for m, rule in enforce.decisions.items() if monitor.decisions[m] != rule]
    assert len(differing) <= enforce.legit_refused, differing[:10]
    assert monitor.worst_before_refusal == enforce.worst_before_refusal
