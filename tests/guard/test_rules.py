"""The guard's rules over its in-process state, in simulated time."""

from __future__ import annotations

from decimal import Decimal

import pytest

from smsrelay.guard import Guard
from smsrelay.models import validate_request
from tests.guard.conftest import Clock, local_guard

NUMBER = "+447400123456"


async def _otps(guard: Guard, count: int, prefix: str = "+4477009", tag: str = "m") -> list[str]:
    """Screen ``count`` OTPs to distinct numbers of ``prefix``; the rules that refused."""
    rules = []
    for n in range(count):
        decision = await guard.screen(f"{tag}-{n}", f"{prefix}{n:05d}", "GB", 0)
        rules.append(decision.verdict.rule if decision.verdict else "")
    return rules


async def test_number_velocity_refuses_the_sixth_otp_within_ten_minutes() -> None:
    """Five OTPs to one number pass; the sixth within the window is refused with the figure."""
    clock = Clock()
    guard = local_guard(clock)
    for n in range(5):
        assert (await guard.screen(f"n-{n}", NUMBER, "GB", 0)).verdict is None
        clock.now += 60
    sixth = await guard.screen("n-5", NUMBER, "GB", 0)
    assert sixth.refused and sixth.error is not None
    assert sixth.error.code == "guard-velocity-number"
    assert "6 OTPs to this number in 600 s (limit 5)" in sixth.error.message
    assert NUMBER not in sixth.error.message
    clock.now += 600
    assert (await guard.screen("n-6", NUMBER, "GB", 0)).verdict is None


async def test_a_message_is_counted_once() -> None:
    """Screening the same message id again (a redelivery) does not count it twice."""
    guard = local_guard(Clock(), number={"limit": 1})
    for _ in range(3):
        assert (await guard.screen("same", NUMBER, "GB", 0)).verdict is None


async def test_prefix_velocity_has_a_floor_and_follows_its_baseline() -> None:
    """A new prefix gets `floor` OTPs per window; after busy windows its limit is factor x baseline."""
    clock = Clock()
    guard = local_guard(clock, prefix={"floor": 10, "factor": 2.0}, baseline_windows=1)
    rules = await _otps(guard, 12)
    assert rules[:10] == [""] * 10 and rules[10:] == ["velocity-prefix"] * 2
    clock.now += 3600  # the finished window (10 allowed + 2 refused, capped at 10) is the baseline
    rules = await _otps(guard, 21, tag="later")
    assert rules[:20] == [""] * 20 and rules[20] == "velocity-prefix"


async def test_a_rising_prefix_that_does_not_convert_is_blocked_with_a_growing_cooldown() -> None:
    """Zero conversion over min_judged OTPs blocks the prefix; a repeat blocks twice as long."""
    clock = Clock()
    guard = local_guard(
        clock, bucket=1, window=600, conversion={"grace": 5, "min_judged": 10, "cooldown": 100}
    )
    await guard.screen("other", "+14155550123", "US", 0)
    assert await guard.converted("other")  # feedback is flowing
    for n in range(10):
        assert (await guard.screen(f"p-{n}", f"+3717800{n:04d}", "LV", 0)).verdict is None
        clock.now += 1
    clock.now += 5
    blocked = await guard.screen("p-10", "+37178000010", "LV", 0)
    assert blocked.error is not None and blocked.error.code == "guard-conversion"
    assert "0 of 10 OTPs converted (0%, min 20%)" in blocked.error.message
    assert blocked.block is not None and blocked.block.until == clock.now + 100
    after = await guard.screen("p-11", "+37178000011", "LV", 0)
    assert after.error is not None and after.error.code == "guard-blocked"
    assert [b.prefix for b in await guard.blocks()] == ["+3717800"]
    clock.now += 101  # the block ends; the prefix is judged on what it sends from now on
    for n in range(12, 22):
        assert (await guard.screen(f"p-{n}", f"+3717800{n:04d}", "LV", 0)).verdict is None
        clock.now += 1
    clock.now += 5
    again = await guard.screen("p-22", "+37178000022", "LV", 0)
    assert again.block is not None and again.block.strikes == 2
    assert again.block.until == clock.now + 200


async def test_no_conversion_block_while_no_feedback_is_reported() -> None:
    """A producer that reports no conversions at all is never blocked for it."""
    clock = Clock()
    guard = local_guard(clock, bucket=1, window=600, conversion={"grace": 1, "min_judged": 5})
    for n in range(20):
        assert (await guard.screen(f"p-{n}", f"+3717800{n:04d}", "LV", 0)).verdict is None
        clock.now += 1


async def test_a_surge_that_converts_passes_the_prefix_velocity_limit() -> None:
    """Past its floor, a prefix whose judged OTPs convert is let through; one that does not is not."""
    clock = Clock()
    guard = local_guard(
        clock, bucket=1, window=600, prefix={"floor": 20}, conversion={"grace": 2, "min_judged": 10}
    )
    refused = {"converting": 0, "silent": 0}
    for n in range(60):
        for name, prefix in (("converting", "+4477009"), ("silent", "+4477010")):
            mid = f"{name}-{n}"
            decision = await guard.screen(mid, f"{prefix}{n:05d}", "GB", 0)
            refused[name] += decision.refused
            if name == "converting" and not decision.refused:
                await guard.converted(mid)
        clock.now += 1
    assert refused["converting"] == 0
    assert refused["silent"] >= 40 - 20  # refused from the 21st on, or blocked


async def test_budget_refuses_past_the_prefix_budget() -> None:
    """With a budget of 1.00 per window, the OTP whose estimated cost passes it is refused."""
    guard = local_guard(Clock(), prefix={"budget": "1.00", "currency": "EUR"})
    request = validate_request({"id": "b-0", "to": NUMBER, "body": "code", "kind": "otp"})
    for n in range(3):
        same = request.model_copy(update={"id": f"b-{n}"})
        assert await guard.refusal(same, Decimal("0.40"), "EUR") is None or n == 2
    refused = await guard.refusal(request.model_copy(update={"id": "b-3"}), Decimal("0.40"), "EUR")
    assert refused is not None and refused.code == "guard-budget-prefix"
    assert "1.60 EUR" in refused.message
    other_currency = request.model_copy(update={"id": "b-4", "to": "+447400223456"})
    assert await guard.refusal(other_currency, Decimal("9"), "USD") is None


@pytest.mark.parametrize("kind", ["marketing", "transactional"])
async def test_only_otps_are_screened(kind: str) -> None:
    """Other kinds pass without being counted."""
    guard = local_guard(Clock(), number={"limit": 1})
    for n in range(3):
        request = validate_request({"id": f"k-{n}", "to": NUMBER, "body": "hi", "kind": kind})
        assert await guard.refusal(request, None, None) is None


async def test_monitor_mode_decides_the_same_and_refuses_nothing() -> None:
    """In monitor mode the verdicts and blocks are the same as enforce's; none is a refusal."""
    verdicts = {}
    for mode in ("enforce", "monitor"):
        clock = Clock()
        guard = local_guard(clock, mode=mode, number={"limit": 2})
        decisions = [await guard.screen(f"m-{n}", NUMBER, "GB", 0) for n in range(4)]
        verdicts[mode] = [d.verdict.rule if d.verdict else "" for d in decisions]
        assert any(d.refused for d in decisions) is (mode == "enforce")
        sample = guard.metrics.decisions.labels("velocity-number", "monitor", "monitor")
        assert (sample._value.get() == 2) is (mode == "monitor")
    assert (
        verdicts["enforce"]
        == verdicts["monitor"]
        == ["", "", "velocity-number"] * 1 + ["velocity-number"]
    )
