"""Retry delays map onto tiers, one queue each (issue 7, item 13)."""

from __future__ import annotations

from smsrelay import topology
from smsrelay.settings import RetrySettings

TIERS = RetrySettings(delays=[5.0, 30.0, 120.0, 600.0], jitter=0.2)


def test_retry_after_is_rounded_up_to_the_next_tier_and_capped() -> None:
    """A Retry-After waits the shortest tier at least as long, and never beyond the longest."""
    assert TIERS.round_up(0.1) == 5.0
    assert TIERS.round_up(30.0) == 30.0
    assert TIERS.round_up(31.0) == 120.0
    assert TIERS.round_up(3600.0) == 600.0


def test_jittered_delays_stay_in_their_tier() -> None:
    """A delay jittered either way is parked in its own tier's queue, not a longer one."""
    for base in TIERS.delays:
        for factor in (0.8, 1.0, 1.2):
            assert TIERS.tier_for(base * factor) == base


def test_retry_queues_are_named_by_delay() -> None:
    """Queue names carry the tier's delay with its unit, apart from the old round-numbered ones."""
    assert topology.retry_queue(5.0) == "sms.retry.5000ms"
    assert topology.retry_queue(0.2) == "sms.retry.200ms"
    assert [topology.retry_queue(t) for t in RetrySettings(delays=[30, 5, 30]).tiers] == [
        "sms.retry.5000ms",
        "sms.retry.30000ms",
    ]
