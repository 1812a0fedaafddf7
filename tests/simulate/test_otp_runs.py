"""Issue 9's scenarios, short, end to end: real broker (own vhost), real worker, SQLite.

An attack run's report counts what the guard refused as the store holds it; a silent
collapse run's report holds the alerts a subscriber of ``sms.alerts`` got.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import select

from smsrelay.simulate.runner import run_scenario
from smsrelay.simulate.scenario import parse_scenario
from smsrelay.store import SqlStore
from smsrelay.store.schema import conversions, messages
from tests.conftest import AMQP_HOST

BROKER = f"amqp://guest:guest@{AMQP_HOST}/"
FAST = {"distribution": "fixed", "median": 1}

ATTACK: dict[str, Any] = {
    "name": "short-attack",
    "duration": 20,
    "time_scale": 2,
    "seed": 5,
    "bucket": 5,
    "traffic": {"GB": {"rate": 3, "kind": "otp", "numbers": 1000, "spread": 6, "conversion": 0.9}},
    "providers": {
        "only": {
            "latency_ms": 2,
            "countries": {
                "GB": {"price": 0.04, "delivery_rate": 1.0, "receipt_delay": FAST},
                "LV": {"price": 0.38, "delivery_rate": 1.0, "receipt_delay": FAST},
            },
        }
    },
    "route": {"strategy": "cheapest", "exploration": 0},
    "guard": {"mode": "enforce"},
    "attack": {
        "start": 2,
        "prefixes": [
            {"prefix": "+3712940", "country": "LV", "burst": 80, "pause": 30, "burst_seconds": 4}
        ],
    },
}


async def test_an_attack_run_blocks_the_pumped_prefix_and_reports_it(sqlite_url: str) -> None:
    """The pumped prefix is refused after at most 100 sends (the velocity floor: 50); the
    report's counts are the store's rejected rows; legitimate OTPs pass and convert."""
    result = await run_scenario(parse_scenario(ATTACK), amqp_url=BROKER, database_url=sqlite_url)
    attack = result.report["attack"]
    row = attack["prefixes"]["+3712940"]

    store = SqlStore.from_url(sqlite_url)
    try:
        async with store.engine.connect() as conn:
            rows = (
                await conn.execute(select(messages.c.to, messages.c.state, messages.c.error_code))
            ).all()
            converted = len((await conn.execute(select(conversions.c.message_id))).all())
    finally:
        await store.close()
    pumped = [r for r in rows if r.to.startswith("+3712940")]
    legit = [r for r in rows if not r.to.startswith("+3712940")]
    rejected = [r for r in pumped if r.state == "rejected"]

    assert len(pumped) == row["requested"] == 80
    assert 0 < row["allowed_before_first_refusal"] <= 100
    assert row["refused"] == len(rejected) == 80 - row["allowed"]
    assert {r.error_code for r in rejected} <= {"guard-velocity-prefix", "guard-blocked"}
    assert row["sent"] == len(pumped) - len(rejected)
    assert attack["cost_saved"] == round(0.38 * len(rejected), 6)
    assert attack["legit_otps"] == len(legit) and attack["legit_refused"] == 0
    assert all(r.state != "rejected" for r in legit)
    assert attack["targets"] == {
        "each_prefix_refused_within_100": True,
        "legit_refused_at_most_0.5pct": True,
    }
    # Conversions were reported for legitimate codes only, through the conversions table.
    assert 0 < converted == result.report["conversions_reported"] <= len(legit)


COLLAPSE: dict[str, Any] = {
    "name": "short-collapse",
    # Long enough after the event for a loaded machine (a full parallel suite) to
    # apply enough receipts for the breaker and the alert to judge.
    "duration": 60,
    "time_scale": 3,
    "seed": 4,
    "bucket": 6,
    "traffic": {"GB": {"rate": 6, "kind": "otp", "numbers": 1000, "spread": 6}},
    "providers": {
        "a": {
            "latency_ms": 2,
            "countries": {"GB": {"price": 0.02, "delivery_rate": 1.0, "receipt_delay": FAST}},
        },
        "b": {
            "latency_ms": 2,
            "countries": {"GB": {"price": 0.03, "delivery_rate": 1.0, "receipt_delay": FAST}},
        },
    },
    # Ordered: traffic stays on a until its breaker opens. Under cost_per_delivered the
    # falling measured rate alone may move it first, and no breaker (no alert) is needed.
    "route": {"strategy": "ordered", "providers": ["a", "b"]},
    "baseline": "b",
    "health": {
        "breakers": {"min_samples": 10, "delivery_window": 9, "delivery_cool_down": 600},
        "alerts": {"window": 9, "min_samples": 10},
    },
    "events": [{"at": 12, "provider": "a", "country": "GB", "set": {"delivery_rate": 0.1}}],
}


async def test_a_silent_collapse_run_reports_the_alerts_it_received(sqlite_url: str) -> None:
    """The alert the worker published on sms.alerts is in the report, after the event,
    naming provider, country, figures and the action; GB recovers through b."""
    result = await run_scenario(parse_scenario(COLLAPSE), amqp_url=BROKER, database_url=sqlite_url)
    report = result.report
    mine = [
        a
        for a in report["alerts"]
        if (a["provider"], a["country"]) == ("a", "GB")
        and a["type"] in {"delivery_drop", "breaker_open"}
    ]
    assert mine, report["alerts"]
    opened = [a for a in mine if a["type"] == "breaker_open"]
    assert opened and opened[0]["action"] == "routed_away" and opened[0]["routed_to"] == ["b"]
    assert all(a["t_s"] > 12 for a in mine)
    assert opened[0]["figures"]["delivery_rate"] < 0.5
    (recovery,) = report["recovery"]
    assert recovery["since_s"] == opened[0]["t_s"] or recovery["basis"].startswith("delivery")
    assert recovery["providers"].get("b", 0) >= recovery["messages"] * 0.9
