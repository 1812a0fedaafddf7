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


def collapsed(t: int, delivered_after: float) -> Sent:
    """GB via a, 10 % delivered from 50 s; via b (all delivered) from ``delivered_after``."""
    if t >= delivered_after:
        return Sent(f"m{t}", "GB", float(t), "b", "b", 0.03, True)
    return Sent(f"m{t}", "GB", float(t), "a", "a", 0.02, t < 50 or t % 10 == 0)


def test_recovery_counts_from_the_alert_that_routed_away() -> None:
    """From the first routed_away alert about a x GB (not the earlier drop alert, nor an
    alert about another key); without an alert, from 120 s after the event."""
    from smsrelay.simulate.report import Captured, recovery

    s = scenario({"delivery_rate": 0.1})
    sent = [collapsed(t, 80) for t in range(150)]
    alerts = [
        Captured(60.0, {"type": "delivery_drop", "provider": "a", "country": "GB"}),
        Captured(
            70.0,
            {"type": "breaker_open", "provider": "b", "country": "GB", "action": "routed_away"},
        ),
        Captured(
            80.0,
            {"type": "breaker_open", "provider": "a", "country": "GB", "action": "routed_away"},
        ),
    ]
    got = recovery(s.events[0], timeline(s), sent, alerts)
    assert got is not None
    assert got["since_s"] == 80.0 and got["first_alert_s"] == 10.0
    assert got["messages"] == 70 and got["delivery_rate"] == 1.0 and got["target_met"]
    # From the drop alert on, messages still went to a: below target.
    early = recovery(s.events[0], timeline(s), sent, alerts[:1])
    assert early is not None and early["since_s"] == 60.0 and not early["target_met"]
    late = recovery(s.events[0], timeline(s), sent, [])
    assert late is not None and late["since_s"] == 170.0 and late["messages"] == 0
    cheaper = scenario({"price": 0.01})
    assert recovery(cheaper.events[0], timeline(cheaper), sent, alerts) is None
