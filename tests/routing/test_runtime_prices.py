"""The worker stores the config's prices at start, plans with them and flags stale ones."""

from __future__ import annotations

from decimal import Decimal

from smsrelay.models import validate_request
from smsrelay.runtime import Runtime
from smsrelay.settings import load
from smsrelay.store.prices import PriceStore


async def test_runtime_loads_config_prices_and_plans_with_them(sqlite_url: str) -> None:
    """Config prices land in the table with history; the router's plan carries them."""
    settings = load(
        None,
        database_url=sqlite_url,
        providers={"a": {"type": "simulator"}, "b": {"type": "simulator"}},
        routes={"*": {"strategy": "cheapest", "providers": ["a", "b"]}},
        prices={
            "max_age_days": 30,
            "providers": {
                "a": {"currency": "USD", "effective_from": "2020-01-01",
                      "destinations": {"GB": "0.05"}},
                "b": {"currency": "USD", "destinations": {"GB": "0.04"}},
            },
        },
    )  # fmt: skip
    runtime = await Runtime.build(settings)
    try:
        await runtime.load_prices()
        stored = await PriceStore(runtime.store.engine).history()
        assert {(p.provider, p.price) for p in stored} == {
            ("a", Decimal("0.05")),
            ("b", Decimal("0.04")),
        }
        plan = runtime.router().plan(
            validate_request({"id": "m", "to": "+442071838750", "body": "hi"})
        )
        assert plan.providers == ["b", "a"]
        stale = runtime.metrics.registry.get_sample_value(
            "smsrelay_stale_prices", {"provider": "a"}
        )
        assert stale == 1
    finally:
        await runtime.close()
