"""How the report judges an event: the time until 90 % of the country's traffic moved away."""

from __future__ import annotations

from smsrelay.simulate.market import timeline
from smsrelay.simulate.report import Sent, reaction
from smsrelay.simulate.scenario import Scenario, parse_scenario


def scenario(change: dict[str, object]) -> Scenario:
    return parse_scenario(
        {
            "name": "t",
            "duration": 200,
            "move_window": 10,
            "traffic": {"GB": {"rate": 1}},
            "providers": {
                "a": {"countries": {"GB": {"price": 0.02, "delivery_rate": 0.95}}},
                "b": {"countries": {"GB": {"price": 0.03, "delivery_rate": 0.95}}},
            },
            "events": [{"at": 50, "provider": "a", "country": "GB", "set": change}],
        }
    )


def traffic(switch_at: float) -> list[Sent]:
    """One GB message per second: to a until ``switch_at``, then to b."""
    out = []
    for t in range(150):
        first = "a" if t < switch_at else "b"
        out.append(Sent(f"m{t}", "GB", float(t), first, first, 0.02, True))
    return out


def test_moved_is_when_the_trailing_window_holds_at_most_10_percent() -> None:
    """Traffic leaves a at 80 s: over a 10 s window, a's share is 10 % at 88 s (79..88: 1 of 10)."""
    s = scenario({"delivery_rate": 0.1})
    got = reaction(s.events[0], timeline(s), traffic(80), s)
    assert got["kind"] == "delivery" and got["share_before"] == 1.0
    assert got["moved_after_s"] == 38.0
    assert got["best_after"] == "b"


def test_never_moved_is_none() -> None:
    """A provider that keeps the traffic has no reaction time."""
    s = scenario({"failure_rate": 1.0})
    got = reaction(s.events[0], timeline(s), traffic(1000), s)
    assert got["kind"] == "outage" and got["moved_after_s"] is None


def test_an_improvement_is_not_judged() -> None:
    """A change that makes the provider better is no event to move away from."""
    s = scenario({"price": 0.01})
    got = reaction(s.events[0], timeline(s), traffic(1000), s)
    assert got["degrades"] is False and got["kind"] is None and got["moved_after_s"] is None
