"""The refusal sampler: a burst, then one per period, each saying how many it skipped."""

from __future__ import annotations

from smsrelay.api.refusals import RefusalSampler, kind_of
from smsrelay.errors import BadSignature, OversizedReceipt, ReplayedReceipt, StaleReceipt


class Clock:
    """A clock the test moves."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_a_burst_then_one_per_period_each_naming_what_it_skipped() -> None:
    """Three pass, the next seven are only counted; a period later one passes, saying seven."""
    clock = Clock()
    sampler = RefusalSampler(burst=3, every=10.0, clock=clock)
    admitted = [sampler.admit("tw", "bad_signature") for _ in range(10)]
    assert admitted == [0, 0, 0] + [None] * 7
    clock.now = 10.0
    assert sampler.admit("tw", "bad_signature") == 7
    assert sampler.admit("tw", "bad_signature") is None


def test_providers_and_kinds_are_sampled_apart() -> None:
    """A flood of one kind does not hide another kind, nor another provider's."""
    sampler = RefusalSampler(burst=1, every=60.0, clock=Clock())
    assert sampler.admit("tw", "bad_signature") == 0
    assert sampler.admit("tw", "bad_signature") is None
    assert sampler.admit("tw", "replayed") == 0
    assert sampler.admit("plivo", "bad_signature") == 0


def test_kinds_name_the_most_specific_refusal() -> None:
    """A replay is `replayed`, not `stale`; an oversized body is `oversized`."""
    assert kind_of(ReplayedReceipt("x")) == "replayed"
    assert kind_of(StaleReceipt("x")) == "stale"
    assert kind_of(OversizedReceipt("x")) == "oversized"
    assert kind_of(BadSignature("x")) == "bad_signature"
