"""The offline optimum and the baseline: expectations over the true offers, period by period."""

from __future__ import annotations

from decimal import Decimal

import pytest

from smsrelay.providers.simulator import Behaviour
from smsrelay.simulate.market import period_at, timeline
from smsrelay.simulate.optimum import (
    Expectation,
    baseline_message,
    benchmarks,
    best_order,
    optimal_message,
)
from smsrelay.simulate.scenario import parse_scenario


def offer(price: str, rate: float, **more: object) -> Behaviour:
    return Behaviour.model_validate({"price": Decimal(price), "delivery_rate": rate, **more})


def test_best_order_is_by_price_per_delivered_message() -> None:
    """A cheaper price that delivers badly ranks after a dearer one that delivers (0.012/0.5 > 0.018/0.95)."""
    offers = {
        "cheap": offer("0.012", 0.5),
        "good": offer("0.018", 0.95),
        "dear": offer("0.04", 0.96),
    }
    assert best_order(offers) == ["good", "cheap", "dear"]


def test_providers_that_deliver_nothing_countable_are_never_used() -> None:
    """Delivery 0, or no receipts at all (nothing proves a delivery), leaves a provider out."""
    offers = {
        "dead": offer("0.001", 0.0),
        "silent": offer("0.001", 0.99, receipts="none"),
        "ok": offer("0.02", 0.9),
    }
    assert best_order(offers) == ["ok"]


def test_optimal_message_costs_the_best_providers_price() -> None:
    """With nothing refused, one message costs the best price per part times parts."""
    got = optimal_message({"a": offer("0.02", 0.8), "b": offer("0.05", 0.99)}, parts=2)
    assert got.cost == pytest.approx(0.04)
    assert got.delivered == pytest.approx(0.8)
    assert got.cost_per_delivered == pytest.approx(0.05)


def test_what_the_best_refuses_goes_to_the_next_best() -> None:
    """An outage of half the sends (failure_rate 0.5) and a 429 share push the rest down the order."""
    offers = {
        "a": offer("0.01", 1.0, failure_rate=0.5),
        "b": offer("0.02", 1.0, throttle_rate=0.5),
        "c": offer("0.04", 0.5),
    }
    got = optimal_message(offers)
    # a takes 0.5; b takes 0.5 * 0.5; c takes the remaining 0.25.
    assert got.cost == pytest.approx(0.5 * 0.01 + 0.25 * 0.02 + 0.25 * 0.04)
    assert got.delivered == pytest.approx(0.5 + 0.25 + 0.25 * 0.5)


def test_baseline_pays_its_price_once_per_message() -> None:
    """The single provider's refusals are retried on it: price once, its delivery rate."""
    got = baseline_message(offer("0.04", 0.96, failure_rate=0.3), parts=1)
    assert (got.cost, got.delivered) == (pytest.approx(0.04), pytest.approx(0.96))


def test_no_delivery_has_no_cost_per_delivered() -> None:
    """Nothing delivered: no figure rather than a division by zero."""
    assert Expectation(1.0, 0.0).cost_per_delivered is None


def scenario_with_collapse() -> object:
    return parse_scenario(
        {
            "name": "t",
            "duration": 100,
            "traffic": {"GB": {"rate": 1}, "US": {"rate": 1}},
            "providers": {
                "global": {
                    "countries": {
                        "GB": {"price": 0.04, "delivery_rate": 1.0},
                        "US": {"price": 0.008, "delivery_rate": 1.0},
                    }
                },
                "euro": {"countries": {"GB": {"price": 0.02, "delivery_rate": 1.0}}},
            },
            "events": [
                {"at": 50, "provider": "euro", "country": "GB", "set": {"delivery_rate": 0.1}},
                {"at": 50, "provider": "global", "country": "US", "set": {"price": 0.01}},
            ],
        }
    )


def test_timeline_has_one_period_per_distinct_event_time() -> None:
    """Events at the same moment change the market together: one new period."""
    periods = timeline(scenario_with_collapse())  # type: ignore[arg-type]
    assert [(p.start, p.end) for p in periods] == [(0.0, 50.0), (50.0, float("inf"))]
    assert periods[0].offers["euro"]["GB"].delivery_rate == 1.0
    assert periods[1].offers["euro"]["GB"].delivery_rate == 0.1
    assert periods[1].offers["global"]["US"].price == Decimal("0.01")
    assert [period_at(periods, t) for t in (-1, 0, 49.9, 50, 1e9)] == [0, 0, 0, 1, 1]


def test_benchmarks_weigh_each_period_by_its_traffic() -> None:
    """Before the collapse GB's optimum is euro (0.02), after it global (0.04); US costs its price."""
    scenario = scenario_with_collapse()
    periods = timeline(scenario)  # type: ignore[arg-type]
    traffic = {("GB", 0): 10, ("GB", 1): 30, ("US", 0): 5, ("US", 1): 5}
    got = benchmarks(periods, traffic, ["global", "euro"], "global", {"GB": 1, "US": 1})
    assert got.optimum.cost == pytest.approx(10 * 0.02 + 30 * 0.04 + 5 * 0.008 + 5 * 0.01)
    assert got.optimum.delivered == pytest.approx(50)
    assert got.baseline.cost == pytest.approx(40 * 0.04 + 5 * 0.008 + 5 * 0.01)
    assert got.baseline.delivered == pytest.approx(50)
