"""Circuit breakers: transport failures, timeouts, half-open probes, delivery collapse."""

from __future__ import annotations

from prometheus_client import CollectorRegistry

from smsrelay.errors import (
    AuthenticationFailed,
    OutcomeUnknown,
    RateLimited,
    RecipientRejected,
    TransientProviderError,
)
from smsrelay.health import (
    BreakerSettings,
    BreakerState,
    CircuitBreakers,
    DeliveryHealth,
    HealthMonitor,
    HealthSettings,
    SendOutcome,
    outcome_of,
)

T, X, OK, NO = SendOutcome.TIMEOUT, SendOutcome.TRANSIENT, SendOutcome.SENT, SendOutcome.FAILED


def breakers(**kw: float) -> CircuitBreakers:
    return CircuitBreakers(BreakerSettings(**{"failures": 3, "timeouts": 2, "cool_down": 10, **kw}))


def feed(b: CircuitBreakers, *outcomes: SendOutcome, at: float = 0.0) -> None:
    for o in outcomes:
        b.record_send("tw", "GB", o, at)


def test_consecutive_transport_failures_open_the_breaker() -> None:
    """N transient failures in a row open it; it says why and refuses sends."""
    b = breakers()
    feed(b, X, X)
    assert b.allow("tw", "GB", 0.0)
    feed(b, X)
    s = b.status("tw", "GB", 1.0)
    assert s.state is BreakerState.OPEN and s.reason == "3 transport failures in a row"
    assert not s.sendable and not b.allow("tw", "GB", 1.0)
    assert b.allow("tw", "US", 1.0), "another country is its own breaker"


def test_two_timeouts_open_it_fast_so_a_hung_provider_stops_costing_timeouts() -> None:
    """Consecutive timeouts open it sooner than other failures: the third OTP is not sent there."""
    b = breakers()
    feed(b, T, T)
    assert b.status("tw", "GB", 0.0).reason == "2 timeouts in a row"
    assert not b.allow("tw", "GB", 0.0)


def test_a_success_resets_the_count_and_a_refusal_is_neutral() -> None:
    """An accepted send resets the run; a permanent refusal (bad number) neither counts nor resets."""
    b = breakers()
    feed(b, X, X, OK, X, X, NO, NO)
    assert b.status("tw", "GB", 0.0).state is BreakerState.CLOSED
    feed(b, X)
    assert b.status("tw", "GB", 0.0).state is BreakerState.OPEN


def test_after_the_cool_down_probes_go_and_one_success_closes() -> None:
    """Open for cool_down, then half-open with `probes` slots; an accepted probe closes it."""
    b = breakers(probes=2)
    feed(b, T, T, at=100.0)
    assert not b.allow("tw", "GB", 109.9)
    assert b.status("tw", "GB", 110.0).state is BreakerState.HALF_OPEN
    assert b.allow("tw", "GB", 110.0) and b.allow("tw", "GB", 110.0)
    assert not b.allow("tw", "GB", 110.0), "only two probes at once"
    feed(b, OK, at=111.0)
    assert b.status("tw", "GB", 111.0).state is BreakerState.CLOSED
    assert b.allow("tw", "GB", 111.0)


def test_a_failed_probe_reopens_for_another_cool_down() -> None:
    """A probe that fails opens the breaker again."""
    b = breakers()
    feed(b, T, T, at=0.0)
    assert b.allow("tw", "GB", 10.0)
    feed(b, T, at=10.5)
    s = b.status("tw", "GB", 11.0)
    assert s.state is BreakerState.OPEN and s.reason == "a probe failed" and s.until == 20.5


def test_a_probe_whose_outcome_never_comes_frees_its_slot_after_a_cool_down() -> None:
    """A lost probe (worker crash) does not hold the breaker half-open forever."""
    b = breakers()
    feed(b, T, T, at=0.0)
    assert b.allow("tw", "GB", 10.0)
    assert not b.allow("tw", "GB", 15.0)
    assert b.allow("tw", "GB", 20.0)


def delivery_breakers(**kw: float) -> tuple[CircuitBreakers, DeliveryHealth]:
    health = DeliveryHealth(window=600, bucket=10)
    settings = {"min_samples": 20, "min_delivery_rate": 0.5, "delivery_window": 60, **kw}
    return CircuitBreakers(BreakerSettings(**settings), health), health


def receipts(b: CircuitBreakers, h: DeliveryHealth, n: int, rate: float, start: float) -> None:
    """n receipts one a second from `start`, every k-th delivered so the rate is `rate`."""
    delivered = 0
    for i in range(n):
        ok = delivered < rate * (i + 1)
        delivered += ok
        h.record_receipt("tw", "GB", delivered=ok, latency_seconds=3.0, at=start + i)
        b.record_send("tw", "GB", OK, start + i)
        b.record_receipt("tw", "GB", start + i)


def test_a_silent_delivery_collapse_opens_it_while_the_api_answers_200() -> None:
    """Every send is accepted, but delivery falls to 20 %: the breaker opens and says why."""
    b, h = delivery_breakers()
    receipts(b, h, 100, 0.95, start=0.0)
    assert b.status("tw", "GB", 100.0).state is BreakerState.CLOSED
    receipts(b, h, 60, 0.2, start=100.0)
    s = b.status("tw", "GB", 160.0)
    assert s.state is BreakerState.OPEN
    assert s.reason is not None and s.reason.startswith("delivery") and "below 50%" in s.reason


def test_too_few_receipts_never_open_it() -> None:
    """Below min_samples, even 0 % delivered is not judged."""
    b, h = delivery_breakers()
    receipts(b, h, 19, 0.0, start=0.0)
    assert b.status("tw", "GB", 19.0).state is BreakerState.CLOSED


def test_a_fall_far_below_its_own_baseline_opens_it() -> None:
    """95 % then 60 %: above the 30 % floor, but more than 30 % below its 95 % baseline."""
    b, h = delivery_breakers(min_delivery_rate=0.3, max_drop=0.3)
    receipts(b, h, 300, 0.95, start=0.0)
    receipts(b, h, 60, 0.6, start=300.0)
    s = b.status("tw", "GB", 360.0)
    assert s.state is BreakerState.OPEN and s.reason is not None and "baseline 9" in s.reason


def test_after_closing_the_old_collapse_is_not_judged_again() -> None:
    """Once a probe closed it, delivery is judged only on receipts that came after."""
    b, h = delivery_breakers(delivery_cool_down=30)
    receipts(b, h, 40, 0.0, start=0.0)
    assert b.status("tw", "GB", 40.0).state is BreakerState.OPEN
    assert b.allow("tw", "GB", 70.0)
    b.record_send("tw", "GB", OK, 70.0)
    receipts(b, h, 19, 1.0, start=71.0)
    assert b.status("tw", "GB", 90.0).state is BreakerState.CLOSED


def test_the_state_gauge_follows_each_breaker() -> None:
    """smsrelay_breaker_state is 0 closed, 2 open, 1 half-open, per provider and country."""
    registry = CollectorRegistry()
    b = CircuitBreakers(BreakerSettings(timeouts=1, cool_down=5), registry=registry)
    labels = {"provider": "tw", "country": "GB"}
    b.record_send("tw", "GB", T, 0.0)
    assert registry.get_sample_value("smsrelay_breaker_state", labels) == 2
    b.status("tw", "GB", 5.0)
    assert registry.get_sample_value("smsrelay_breaker_state", labels) == 1
    b.allow("tw", "GB", 5.0)
    b.record_send("tw", "GB", OK, 5.0)
    assert registry.get_sample_value("smsrelay_breaker_state", labels) == 0


def test_breakers_are_bounded_in_number() -> None:
    """Beyond max_keys, closed breakers are forgotten first; open ones keep their decision."""
    b = CircuitBreakers(BreakerSettings(timeouts=1), max_keys=2)
    b.record_send("tw", "GB", T, 0.0)
    for c in ["US", "FR", "DE"]:
        b.record_send("tw", c, OK, 0.0)
    assert len(b._breakers) == 2
    assert b.status("tw", "GB", 1.0).state is BreakerState.OPEN


def test_the_monitor_feeds_windows_and_breakers_from_settings() -> None:
    """HealthMonitor counts a send and a receipt in the window and opens the breaker on timeouts."""
    clock = iter(float(t) for t in range(100))
    monitor = HealthMonitor(HealthSettings(), clock=lambda: next(clock))
    monitor.record_send("tw", "GB", OK)
    monitor.record_receipt("tw", "GB", delivered=True, latency_seconds=4.0)
    snap = monitor.snapshot("tw", "GB")
    assert (snap.sent, snap.delivered, snap.latency_p50) == (1, 1, 5)
    monitor.record_send("tw", "GB", T)
    monitor.record_send("tw", "GB", T)
    assert monitor.status("tw", "GB").state is BreakerState.OPEN and not monitor.allow("tw", "GB")


def test_provider_errors_map_to_health_outcomes() -> None:
    """A 429 is back-pressure (nothing), a bad number is neutral, a lost answer a timeout, the rest failures."""
    assert outcome_of(None) is OK
    assert outcome_of(RateLimited("tw", "429", "slow down", retry_after=2)) is None
    assert outcome_of(RecipientRejected("tw", "21211", "bad number")) is NO
    assert outcome_of(OutcomeUnknown("tw", "timeout", "no answer within 10 s")) is T
    assert outcome_of(TransientProviderError("tw", "503", "down")) is X
    assert outcome_of(AuthenticationFailed("tw", "20003", "bad token")) is X
