"""A short scenario end to end: real broker (its own vhost), real worker, real SQLite store.

The report's figures must be the store's: counted here straight from the tables.
"""

from __future__ import annotations

import subprocess
from decimal import Decimal

from sqlalchemy import func, select

from smsrelay import urls
from smsrelay.simulate.runner import run_scenario
from smsrelay.simulate.scenario import parse_scenario
from smsrelay.store import SqlStore
from smsrelay.store.schema import attempts, messages, receipts
from tests.conftest import AMQP_HOST

SCENARIO = {
    "name": "short",
    "duration": 20,
    "time_scale": 10,
    "seed": 3,
    "bucket": 5,
    "traffic": {"GB": {"rate": 4}, "US": {"rate": 2}},
    "providers": {
        "cheap": {
            "latency_ms": 5,
            "countries": {
                "GB": {
                    "price": 0.02,
                    "delivery_rate": 1.0,
                    "receipt_delay": {"distribution": "fixed", "median": 1},
                },
                "US": {
                    "price": 0.004,
                    "delivery_rate": 1.0,
                    "receipt_delay": {"distribution": "exponential", "median": 1},
                },
            },
        },
        "dear": {
            "latency_ms": 5,
            "countries": {
                "GB": {"price": 0.04, "delivery_rate": 1.0},
                "US": {"price": 0.008, "delivery_rate": 1.0},
            },
        },
    },
    "route": {"strategy": "cheapest", "exploration": 0},
    "baseline": "dear",
    "events": [{"at": 10, "provider": "cheap", "country": "GB", "set": {"delivery_rate": 0.0}}],
}


def vhosts() -> set[str]:
    listed = subprocess.run(
        ["rabbitmqctl", "-q", "list_vhosts", "--no-table-headers"],
        check=True,
        capture_output=True,
        text=True,
        timeout=60,
    )
    return set(listed.stdout.split())


async def test_a_short_run_reports_what_the_store_holds(sqlite_url: str) -> None:
    """Cost, messages and deliveries in the report are the store's rows; receipts came through the
    worker's receipt path; the timed event changed the provider's behaviour from its moment on."""
    scenario = parse_scenario(SCENARIO)
    # The run makes (and deletes) a vhost of its own on this broker.
    broker = f"amqp://guest:guest@{AMQP_HOST}/"
    result = await run_scenario(scenario, amqp_url=broker, database_url=sqlite_url)
    report = result.report
    own = urls.vhost(result.amqp_url)
    assert own.startswith("smsrelay-sim-") and own not in vhosts(), "its own vhost, deleted after"

    store = SqlStore.from_url(sqlite_url)
    try:
        async with store.engine.connect() as conn:
            n_messages = (await conn.execute(select(func.count()).select_from(messages))).scalar()
            n_delivered = (
                await conn.execute(
                    select(func.count())
                    .select_from(messages)
                    .where(messages.c.state == "delivered")
                )
            ).scalar()
            sent_costs = (
                (
                    await conn.execute(
                        select(attempts.c.estimated_cost).where(attempts.c.outcome == "sent")
                    )
                )
                .scalars()
                .all()
            )
            n_receipts = (await conn.execute(select(func.count()).select_from(receipts))).scalar()
    finally:
        await store.close()

    assert n_messages and n_messages > 80  # ~120 expected at 6 msg/s for 20 s
    assert report["messages"] == n_messages
    assert report["sent"] == len(sent_costs) == n_messages
    assert report["delivered"] == n_delivered
    assert report["not_taken"] == report["without_receipt"] == 0, "the run settled"
    assert n_receipts == len(sent_costs), "every accepted send got its receipt via the sink"
    total = sum((Decimal(c) for c in sent_costs), Decimal(0))
    assert abs(Decimal(str(report["cost"])) - total) < Decimal("0.000001")
    assert report["cost_per_delivered"]["run"] == round(float(total) / n_delivered, 6)
    assert sum(row["messages"] for row in report["by_country"].values()) == n_messages

    # cheapest sends everything to "cheap"; GB delivers all before 10 s and nothing after
    # (the buckets next to the event may hold messages decided as it was being played).
    gb = report["series"]["countries"]["GB"]
    assert list(gb["share"]) == ["cheap"]
    assert {v for v in gb["share"]["cheap"] if v is not None} == {1.0}
    rates = [r for r in gb["delivery_rate"] if r is not None]
    assert rates[0] == 1.0 and rates[-1] == 0.0 and rates == sorted(rates, reverse=True)
    # Nothing reacts to a collapse under `cheapest`: the event reports no move.
    (event,) = report["events"]
    assert event["degrades"] and event["share_before"] == 1.0 and event["moved_after_s"] is None
    assert event["best_after"] == "dear"
    # The optimum knows GB went to "dear" at 10 s; the baseline pays "dear" all along
    # (and "cheap" delivers as well as "dear" in the US, at half the price).
    figures = report["cost_per_delivered"]
    assert figures["optimum"] < figures["baseline"]
