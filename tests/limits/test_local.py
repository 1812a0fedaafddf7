"""The in-process limits: token buckets on a fake clock, spend caps per day and month."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

import pytest
from prometheus_client import CollectorRegistry

from smsrelay.limits.caps import LocalSpendCaps, micros
from smsrelay.limits.metrics import LimitMetrics
from smsrelay.limits.rates import LocalRateLimiter, RateRules, rate_key
from smsrelay.limits.settings import RateLimit, RateRule, SpendCapSettings


class Clock:
    def __init__(self, now: float = 0.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def limiter(clock: Clock, **kw: object) -> LocalRateLimiter:
    rules = RateRules(
        {"tw": RateLimit(per_second=10, burst=5, per_sender=RateRule(per_second=1)), "free": None}
    )
    return LocalRateLimiter(rules, clock=clock, **kw)  # type: ignore[arg-type]


def test_burst_then_one_token_per_tenth_of_a_second() -> None:
    """A full bucket gives `burst` at once; then tokens come at per_second, in order of asking."""
    clock = Clock()
    lim = limiter(clock)
    assert [lim.reserve("tw", wait=0) for _ in range(5)] == [0.0] * 5
    assert lim.reserve("tw", wait=0) is None
    assert lim.reserve("tw", wait=1) == pytest.approx(0.1)
    assert lim.reserve("tw", wait=1) == pytest.approx(0.2), "the next waiter queues behind"
    clock.now = 1.0
    assert lim.reserve("tw", wait=0) == 0.0


def test_unlimited_keys_and_per_sender_keys() -> None:
    """A provider without rate_limit is not limited; per_sender limits each sender apart."""
    lim = limiter(Clock())
    assert all(lim.reserve("free", wait=0) == 0.0 for _ in range(1000))
    rules = lim.rules
    assert rules.keys("tw", "ACME") == ["tw", "tw/ACME"] and rules.keys("free", "ACME") == []
    assert lim.reserve(rate_key("tw", "ACME"), wait=0) == 0.0
    assert lim.reserve(rate_key("tw", "ACME"), wait=0) is None
    assert lim.reserve(rate_key("tw", "OTHER"), wait=0) == 0.0


async def test_acquire_refuses_beyond_wait_and_counts_it() -> None:
    """acquire is False when a token is further than `wait`; waits and refusals are counted."""
    registry = CollectorRegistry()
    clock = Clock()
    lim = limiter(clock, metrics=LimitMetrics(registry))
    for _ in range(5):
        assert await lim.acquire("tw", wait=0)
    assert not await lim.acquire("tw", wait=0.05)
    assert await lim.acquire("tw", wait=0.5)
    labels = {"provider": "tw"}
    assert (
        registry.get_sample_value(
            "smsrelay_rate_limit_waits_total", {**labels, "result": "refused"}
        )
        == 1
    )
    assert (
        registry.get_sample_value("smsrelay_rate_limit_waits_total", {**labels, "result": "waited"})
        == 1
    )


async def test_penalise_pauses_a_key() -> None:
    """After a 429, no token is given until the pause is over."""
    clock = Clock()
    lim = limiter(clock)
    await lim.penalise("tw", 2.0)
    assert lim.reserve("tw", wait=1.0) is None
    assert lim.reserve("tw", wait=2.5) == pytest.approx(2.0)


def test_scaled_rules_are_a_workers_share() -> None:
    """scaled(1/2) halves rate and burst (never below one token)."""
    rule = RateRules({"tw": RateLimit(per_second=10, burst=5)}).scaled(0.5).rule("tw")
    assert rule is not None and rule.per_second == 5 and rule.capacity == 2


class Days:
    def __init__(self) -> None:
        self.now = datetime(2026, 12, 1, 12, tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.now


CAPS = SpendCapSettings.model_validate(
    {
        "currency": "USD",
        "total": {"month": "10"},
        "providers": {"tw": {"day": "0.10"}},
        "countries": {"GB": {"day": "1"}},
    }
)


async def test_a_provider_day_cap_stops_that_provider_only() -> None:
    """At its day cap a provider is refused with the cap named; others still pass."""
    caps = LocalSpendCaps(CAPS, clock=Days())
    for _ in range(10):
        assert (await caps.allows("tw", "US", Decimal("0.01"))).allowed
        await caps.spend("tw", "US", Decimal("0.01"))
    decision = await caps.allows("tw", "US", Decimal("0.01"))
    assert not decision.allowed and decision.cap == "provider tw per day"
    assert (
        decision.spent == Decimal("0.1") and decision.remaining == 0 and decision.currency == "USD"
    )
    assert (await caps.allows("vn", "US", Decimal("0.01"))).allowed


async def test_country_and_total_caps_and_the_next_day() -> None:
    """A country cap refuses every provider there; a new UTC day starts the day caps afresh."""
    clock = Days()
    caps = LocalSpendCaps(CAPS, clock=clock)
    await caps.spend("vn", "GB", Decimal("1"))
    decision = await caps.allows("vn", "GB", Decimal("0.001"))
    assert not decision.allowed and decision.cap == "country GB per day"
    clock.now = datetime(2026, 12, 2, 0, 0, 1, tzinfo=UTC)
    assert (await caps.allows("vn", "GB", Decimal("0.001"))).allowed
    await caps.spend("vn", "FR", Decimal("9"))
    decision = await caps.allows("vn", "FR", Decimal("0.01"))
    assert not decision.allowed and decision.cap == "overall per month"


async def test_reaching_a_cap_is_counted_and_warned_once(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """smsrelay_spend_cap_reached counts each refusal; the warning is logged once per cap and period."""
    registry = CollectorRegistry()
    caps = LocalSpendCaps(CAPS, clock=Days(), metrics=LimitMetrics(registry))
    await caps.spend("tw", "US", Decimal("0.10"))
    for _ in range(3):
        assert not (await caps.allows("tw", "US", Decimal("0.01"))).allowed
    labels = {"scope": "provider", "name": "tw", "period": "day"}
    assert registry.get_sample_value("smsrelay_spend_cap_reached_total", labels) == 3
    assert capsys.readouterr().out.count("spend_cap_reached") == 1


def test_amounts_are_counted_in_micro_units_rounded_up() -> None:
    """Sums are integers: 0.0075 is 7500 micro-units, and 8 decimals round up."""
    assert micros(Decimal("0.0075")) == 7500
    assert micros(Decimal("0.00000001")) == 1
    assert sum(micros(Decimal("0.1")) for _ in range(10)) == micros(Decimal("1"))


async def test_no_caps_allow_everything() -> None:
    """Without spend_caps every amount is allowed."""
    caps = LocalSpendCaps(SpendCapSettings())
    assert (await caps.allows("tw", "GB", Decimal("1e6"))).allowed
