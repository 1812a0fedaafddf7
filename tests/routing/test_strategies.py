"""Route strategies and the plan: each strategy's order, priors, exploration, caps, breakers."""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime
from decimal import Decimal

import pytest

from smsrelay.economics.prices import Price, PriceTable
from smsrelay.models import BodyEncoding, SendRequest, validate_request
from smsrelay.routing import HealthSnapshot, LimitState, RouteConfig, Router
from smsrelay.settings import load

LONDON = "+442071838750"
WHEN = datetime(2026, 1, 1, tzinfo=UTC)


def request(body: str = "hello", message_id: str = "m-1", to: str = LONDON) -> SendRequest:
    """A request to ``to``."""
    return validate_request({"id": message_id, "to": to, "body": body})


def prices(**per_part: str) -> PriceTable:
    """GB prices per provider."""
    return PriceTable([Price(p, "GB", Decimal(v), "USD", WHEN) for p, v in per_part.items()])


class Health:
    """Fixed delivery rates and breakers per provider."""

    def __init__(self, **snapshots: HealthSnapshot) -> None:
        self.snapshots = snapshots

    def snapshot(self, provider: str, country: str) -> HealthSnapshot:
        """The configured snapshot, or no data."""
        return self.snapshots.get(provider, HealthSnapshot(None, 0))


class Limits:
    """Spend caps reached for some providers."""

    def __init__(self, *capped: str) -> None:
        self.capped = capped

    def state(self, provider: str, country: str) -> LimitState:
        """Cap reached for the named providers."""
        return LimitState(cap_reached=provider in self.capped, detail="daily cap 10 USD")


def test_plain_list_is_ordered() -> None:
    """A route given as a list keeps today's order, with every provider a candidate."""
    router = Router({"*": ["b", "a", "c"]})
    assert router.route(request()) == ["b", "a", "c"]
    assert router.plan(request()).strategy == "ordered"


def test_cheapest_orders_by_parts_times_price() -> None:
    """cheapest sorts by estimated cost, and the estimate is parts x price."""
    route = RouteConfig(strategy="cheapest", providers=["a", "b", "c"])
    router = Router({"*": route}, prices=prices(a="0.05", b="0.01", c="0.03"))
    plan = router.plan(request("x" * 200))  # two GSM-7 parts
    assert plan.providers == ["b", "c", "a"]
    assert [c.estimated_cost for c in plan.tried] == [
        Decimal("0.02"),
        Decimal("0.06"),
        Decimal("0.10"),
    ]


def test_cheapest_counts_parts_as_each_provider_sends() -> None:
    """A smart-encoding provider sends a curly quote as GSM-7: fewer parts can make it cheaper."""
    route = RouteConfig(strategy="cheapest", providers=["exact", "smart"])
    router = Router(
        {"*": route},
        prices=prices(exact="0.01", smart="0.015"),
        encodings={"smart": BodyEncoding.SMART},
    )
    plan = router.plan(request("Don\u2019t " + "x" * 100))  # UCS-2: 2 parts; GSM-7: 1 part
    assert plan.providers == ["smart", "exact"]
    smart = plan.candidate("smart")
    assert smart is not None and (smart.parts, smart.encoding) == (1, "gsm7")
    assert smart.request.body.startswith("Don't")


def test_unpriced_provider_is_excluded_from_cost_strategies() -> None:
    """Without a price a provider is no candidate for cost strategies (unpriced: exclude)."""
    route = RouteConfig(strategy="cheapest", providers=["a", "nopr"])
    plan = Router({"*": route}, prices=prices(a="0.05")).plan(request())
    assert plan.providers == ["a"]
    left_out = plan.candidate("nopr")
    assert left_out is not None and "no price" in (left_out.excluded or "")


def test_unpriced_last_keeps_the_provider_after_priced_ones() -> None:
    """unpriced: last keeps an unpriced provider as the last failover."""
    route = RouteConfig(strategy="cheapest", providers=["nopr", "a"], unpriced="last")
    assert Router({"*": route}, prices=prices(a="0.05")).route(request()) == ["a", "nopr"]


def test_weighted_split_follows_the_weights() -> None:
    """A 70/30 split sends about 70 % first to a, over many message ids."""
    route = RouteConfig(strategy="weighted", providers=["a", "b"], weights={"a": 70, "b": 30})
    router = Router({"*": route})
    firsts = Counter(router.route(request(message_id=f"m-{i}"))[0] for i in range(2000))
    assert 0.66 < firsts["a"] / 2000 < 0.74


def test_weighted_is_deterministic_per_message_id_and_fails_over() -> None:
    """The same id always picks the same provider; the other is failover."""
    route = RouteConfig(strategy="weighted", providers=["a", "b"], weights={"a": 50, "b": 50})
    router = Router({"*": route})
    orders = {tuple(router.route(request(message_id="same"))) for _ in range(20)}
    assert len(orders) == 1
    assert sorted(orders.pop()) == ["a", "b"]


def test_weighted_zero_weight_is_failover_only() -> None:
    """A provider with weight 0 is never first."""
    route = RouteConfig(strategy="weighted", providers=["a", "b"], weights={"a": 1, "b": 0})
    router = Router({"*": route})
    assert {router.route(request(message_id=f"m-{i}"))[0] for i in range(200)} == {"a"}


def test_cost_per_delivered_prefers_cheaper_delivery_over_cheaper_send() -> None:
    """A cheap provider that delivers half loses to a dearer one that delivers all."""
    route = RouteConfig(strategy="cost_per_delivered", providers=["cheap", "good"], exploration=0)
    health = Health(cheap=HealthSnapshot(0.4, 1000), good=HealthSnapshot(0.99, 1000))
    router = Router({"*": route}, prices=prices(cheap="0.01", good="0.015"), health=health)
    assert router.route(request()) == ["good", "cheap"]


def test_cost_per_delivered_uses_the_prior_without_data() -> None:
    """With no samples the prior rate stands in; a few bad samples do not condemn."""
    route = RouteConfig(
        strategy="cost_per_delivered",
        providers=["new", "known"],
        exploration=0,
        prior_rate=0.9,
        prior_samples=20,
    )
    health = Health(new=HealthSnapshot(0.0, 2), known=HealthSnapshot(0.9, 1000))
    router = Router({"*": route}, prices=prices(new="0.010", known="0.012"), health=health)
    plan = router.plan(request())
    # new: 0.9*20/22 = 0.818 -> 0.0122; known: 0.012/0.9 = 0.0133
    assert plan.providers == ["new", "known"]


def test_cost_per_delivered_explores_a_small_deterministic_share() -> None:
    """About `exploration` of messages put another provider first, the same for an id."""
    route = RouteConfig(strategy="cost_per_delivered", providers=["a", "b", "c"], exploration=0.1)
    router = Router({"*": route}, prices=prices(a="0.01", b="0.02", c="0.03"))
    explored = [i for i in range(3000) if router.route(request(message_id=f"m-{i}"))[0] != "a"]
    assert 0.08 < len(explored) / 3000 < 0.12
    again = router.plan(request(message_id=f"m-{explored[0]}"))
    assert again.providers[0] != "a" and "exploration" in again.tried[0].reason


def test_spend_cap_leaves_the_provider_out() -> None:
    """A provider at its spend cap is not tried, with the cap as reason."""
    router = Router({"*": ["a", "b"]}, limits=Limits("a"))
    plan = router.plan(request())
    assert plan.providers == ["b"]
    capped = plan.candidate("a")
    assert capped is not None and "spend cap" in (capped.excluded or "")


@pytest.mark.parametrize("strategy", ["ordered", "cheapest", "cost_per_delivered"])
def test_open_breaker_goes_last_for_every_strategy(strategy: str) -> None:
    """An open breaker sends its provider after the others, whatever the strategy."""
    route = RouteConfig(strategy=strategy, providers=["a", "b"], exploration=0)  # type: ignore[arg-type]
    health = Health(a=HealthSnapshot(0.99, 100, "open"))
    router = Router({"*": route}, prices=prices(a="0.01", b="0.02"), health=health)
    plan = router.plan(request())
    assert plan.providers == ["b", "a"]
    assert "breaker open" in plan.tried[1].reason


def test_existing_list_configs_load_unchanged(tmp_path: object) -> None:
    """A config of plain lists loads as lists and routes as before; a mapping loads too."""
    settings = load(
        None,
        providers={"a": {"type": "simulator"}, "b": {"type": "simulator"}},
        routes={"*": ["a", "b"], "GB": {"strategy": "cheapest", "providers": ["b", "a"]}},
    )
    assert settings.routes["*"] == ["a", "b"]
    assert isinstance(settings.routes["GB"], RouteConfig)
    assert Router(settings.routes).route(request(to="+14155550123")) == ["a", "b"]


def test_route_mapping_is_checked() -> None:
    """Unknown providers in a mapping route and weights outside it stop start-up."""
    from smsrelay.errors import ConfigError

    providers = {"a": {"type": "simulator"}}
    with pytest.raises(ConfigError, match=r"routes\.\*"):
        load(None, providers=providers, routes={"*": {"providers": ["zzz"]}})
    with pytest.raises(ConfigError, match="weights"):
        load(
            None,
            providers=providers,
            routes={"*": {"strategy": "weighted", "providers": ["a"], "weights": {"b": 1}}},
        )


def test_route_mapping_from_an_environment_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    """SMSRELAY_ROUTES__GB may hold a route mapping as JSON."""
    monkeypatch.setenv("SMSRELAY_ROUTES__GB", '{"strategy": "cheapest", "providers": ["a"]}')
    settings = load(None, providers={"a": {"type": "simulator"}}, routes={"*": ["a"]})
    assert settings.routes["GB"] == RouteConfig(strategy="cheapest", providers=["a"])
