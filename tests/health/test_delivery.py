"""Delivery health: sliding windows, the Beta prior, latency quantiles, bounded memory."""

from __future__ import annotations

import pytest

from smsrelay.health import DeliveryHealth, SendOutcome


def test_no_data_reads_the_prior() -> None:
    """A provider never seen has the prior rate and no samples: cost_per_delivered has a number."""
    h = DeliveryHealth(prior_rate=0.8, prior_weight=10)
    s = h.snapshot("tw", "GB", now=0.0)
    assert s.delivery_rate == pytest.approx(0.8)
    assert s.samples == 0 and s.observed_rate is None and s.latency_p50 is None


def test_rate_moves_from_prior_toward_observed_as_samples_grow() -> None:
    """With receipts, the rate is the Beta posterior mean (delivered + a) / (n + a + b)."""
    h = DeliveryHealth(prior_rate=0.9, prior_weight=10)
    for i in range(40):
        h.record_receipt("tw", "GB", delivered=i % 2 == 0, latency_seconds=2.0, at=float(i))
    s = h.snapshot("tw", "GB", now=40.0)
    assert s.samples == 40 and s.delivered == 20 and s.observed_rate == 0.5
    assert s.delivery_rate == pytest.approx((20 + 9) / (40 + 10))


def test_send_outcomes_are_counted_by_kind() -> None:
    """Each outcome is counted apart; attempts sums them."""
    h = DeliveryHealth()
    for outcome, n in [
        (SendOutcome.SENT, 5),
        (SendOutcome.FAILED, 1),
        (SendOutcome.TRANSIENT, 2),
        (SendOutcome.TIMEOUT, 3),
    ]:
        for _ in range(n):
            h.record_send("tw", "US", outcome, at=10.0)
    s = h.snapshot("tw", "US", now=10.0)
    assert (s.sent, s.failed, s.transient, s.timeouts, s.attempts) == (5, 1, 2, 3, 11)


def test_old_buckets_leave_the_window() -> None:
    """Events older than the window no longer count."""
    h = DeliveryHealth(window=60, bucket=10)
    h.record_receipt("tw", "GB", delivered=False, latency_seconds=None, at=0.0)
    h.record_receipt("tw", "GB", delivered=True, latency_seconds=None, at=55.0)
    assert h.snapshot("tw", "GB", now=59.0).samples == 2
    s = h.snapshot("tw", "GB", now=75.0)
    assert (s.delivered, s.undelivered) == (1, 0)


def test_since_limits_the_snapshot_to_recent_buckets() -> None:
    """snapshot(since=t) counts only buckets from t's bucket on."""
    h = DeliveryHealth(window=600, bucket=10)
    h.record_receipt("tw", "GB", delivered=False, latency_seconds=None, at=5.0)
    h.record_receipt("tw", "GB", delivered=True, latency_seconds=None, at=25.0)
    assert h.snapshot("tw", "GB", now=30.0, since=20.0).undelivered == 0
    assert h.snapshot("tw", "GB", now=30.0).undelivered == 1


def test_latency_quantiles_come_from_the_histogram() -> None:
    """p50 and p95 are the upper edges of the histogram buckets that hold them."""
    h = DeliveryHealth()
    for i in range(100):
        h.record_receipt(
            "tw", "GB", delivered=True, latency_seconds=1.5 if i < 90 else 100.0, at=1.0
        )
    s = h.snapshot("tw", "GB", now=1.0)
    assert s.latency_p50 == 2 and s.latency_p95 == 120


def test_memory_is_bounded_per_key_and_in_keys() -> None:
    """A key holds at most window/bucket buckets; beyond max_keys the least recently fed goes."""
    h = DeliveryHealth(window=60, bucket=10, max_keys=3)
    for t in range(0, 10_000, 7):
        h.record_send("tw", "GB", SendOutcome.SENT, at=float(t))
    assert len(h._keys[("tw", "GB")]) <= 6
    for c in ["US", "FR", "DE", "IT"]:
        h.record_send("tw", c, SendOutcome.SENT, at=10_000.0)
    assert h.keys() == [("tw", "FR"), ("tw", "DE"), ("tw", "IT")]


def test_a_clock_stepping_back_does_not_grow_the_window() -> None:
    """An event stamped before the newest bucket lands in it rather than adding a bucket."""
    h = DeliveryHealth(window=60, bucket=10)
    h.record_send("tw", "GB", SendOutcome.SENT, at=100.0)
    h.record_send("tw", "GB", SendOutcome.SENT, at=50.0)
    assert len(h._keys[("tw", "GB")]) == 1
    assert h.snapshot("tw", "GB", now=100.0).sent == 2
