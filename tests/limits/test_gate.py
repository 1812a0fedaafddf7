"""The worker's LimitGate in memory: the OTP lane's reserved share, caps before and after
an attempt, and what the planner reads from it."""

from __future__ import annotations

from decimal import Decimal

from smsrelay.limits.build import build_limit_gate
from smsrelay.limits.caps import LocalSpendCaps
from smsrelay.limits.gate import LimitGate, otp_key, with_otp_lanes
from smsrelay.limits.rates import LocalRateLimiter, RateRules
from smsrelay.limits.settings import LimitSettings, RateLimit, SpendCapSettings


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def gate(share: float, clock: Clock) -> LimitGate:
    settings = LimitSettings(otp_share=share)
    lanes = with_otp_lanes({"p": RateLimit(per_second=10, burst=10)}, share)
    rules = RateRules(lanes)
    limiter = LocalRateLimiter(rules, clock=clock)
    return LimitGate(limiter, rules, None, SpendCapSettings(), settings, clock=clock)


async def admitted(g: LimitGate, n: int, *, otp: bool) -> int:
    got = 0
    for _ in range(n):
        refusal = await g.admit("p", "GB", sender=None, otp=otp, cost=None, currency=None, wait=0)
        got += refusal is None
    return got


def test_otp_lanes_split_each_limit_and_keep_the_total() -> None:
    """A 10/s limit with otp_share 0.2 becomes 8/s for every kind and 2/s kept for OTP."""
    lanes = with_otp_lanes({"p": RateLimit(per_second=10, burst=10), "q": None}, 0.2)
    assert lanes["p"] == RateLimit(per_second=8, burst=8)
    assert lanes[otp_key("p")] == RateLimit(per_second=2, burst=2)
    assert lanes["q"] is None and otp_key("q") not in lanes
    assert with_otp_lanes({"p": RateLimit(per_second=10)}, 0) == {"p": RateLimit(per_second=10)}


async def test_bulk_cannot_starve_otp() -> None:
    """Bulk traffic draining the limit leaves OTP its reserved share, then and every second."""
    clock = Clock()
    g = gate(0.2, clock)
    assert await admitted(g, 20, otp=False) == 8, "bulk: at most 1 - otp_share of the burst"
    assert await admitted(g, 5, otp=True) == 2, "OTP: its own share is still there"
    clock.now += 1.0
    assert await admitted(g, 20, otp=False) == 8
    assert await admitted(g, 5, otp=True) == 2


async def test_otp_may_use_the_whole_limit_when_bulk_is_idle() -> None:
    """With no bulk traffic, OTP takes its own share and then the shared bucket."""
    g = gate(0.2, Clock())
    assert await admitted(g, 20, otp=True) == 10


async def test_without_a_share_otp_and_bulk_use_one_bucket() -> None:
    """otp_share 0: bulk can take the whole burst, and OTP then waits like any other."""
    g = gate(0.0, Clock())
    assert await admitted(g, 20, otp=False) == 10
    assert await admitted(g, 5, otp=True) == 0


async def test_a_capped_provider_is_refused_and_shown_to_the_planner() -> None:
    """Once spending reaches a provider's cap, admit refuses it and state() says cap_reached."""
    caps_settings = SpendCapSettings.model_validate({"providers": {"p": {"day": "0.03"}}})
    g = LimitGate(
        None, RateRules({}), LocalSpendCaps(caps_settings), caps_settings, LimitSettings()
    )

    async def admit() -> object:
        return await g.admit(
            "p", "GB", sender=None, otp=False, cost=Decimal("0.01"), currency="USD", wait=0
        )

    for _ in range(3):
        assert await admit() is None
        await g.sent("p", "GB", estimated=(Decimal("0.01"), "USD"), actual=(None, None))
    assert not g.state("p", "GB").cap_reached
    refusal = await admit()
    assert refusal is not None and refusal.kind == "cap" and "provider p per day" in refusal.detail
    assert g.state("p", "GB").cap_reached and not g.state("p", "FR").cap_reached


async def test_spend_counts_the_actual_cost_and_never_another_currency() -> None:
    """The provider's own cost wins over the estimate; an amount in another currency is not counted."""
    caps_settings = SpendCapSettings.model_validate({"total": {"day": "1"}})
    caps = LocalSpendCaps(caps_settings)
    g = LimitGate(None, RateRules({}), caps, caps_settings, LimitSettings())
    await g.sent("p", "GB", estimated=(Decimal("0.05"), "USD"), actual=(Decimal("0.04"), "USD"))
    await g.sent("p", "GB", estimated=(Decimal("0.05"), "EUR"), actual=(None, None))
    await g.sent("p", "GB", estimated=(Decimal("0.05"), "USD"), actual=(Decimal("0.9"), "EUR"))
    decision = await caps.allows("p", "GB", Decimal(0))
    assert decision.spent == Decimal("0.09")


def test_a_gate_without_limits_or_caps_is_inactive() -> None:
    """No rate_limit and no cap: the runtime gives the dispatcher no gate at all."""
    idle = build_limit_gate(None, {"p": None}, SpendCapSettings(), LimitSettings())
    assert not idle.active
    busy = build_limit_gate(
        None, {"p": RateLimit(per_second=1)}, SpendCapSettings(), LimitSettings()
    )
    assert busy.active and busy.limited("p") and not busy.limited("q")
