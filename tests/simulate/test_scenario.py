"""The scenario file is outside input: bad entries are refused with the key and the reason."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from smsrelay.errors import ScenarioError
from smsrelay.simulate.scenario import load_scenario, parse_scenario

SHIPPED = sorted((Path(__file__).parents[2] / "scenarios").glob("*.yaml"))


def minimal() -> dict[str, Any]:
    return {
        "name": "t",
        "duration": 60,
        "traffic": {"GB": {"rate": 1}},
        "providers": {
            "a": {"countries": {"GB": {"price": 0.02, "delivery_rate": 0.9}}},
            "b": {"countries": {"GB": {"price": 0.03}}},
        },
    }


def refused(data: object) -> str:
    with pytest.raises(ScenarioError) as caught:
        parse_scenario(data)
    return str(caught.value)


def test_a_minimal_scenario_is_accepted_with_defaults() -> None:
    """Only name, duration, traffic and providers are needed; the baseline is the one covering all."""
    scenario = parse_scenario(minimal())
    assert scenario.route.strategy == "cost_per_delivered"
    assert scenario.route_providers == ["a", "b"]
    assert scenario.baseline_provider == "a"


@pytest.mark.parametrize("path", SHIPPED, ids=lambda p: p.name)
def test_shipped_scenarios_are_valid(path: Path) -> None:
    """Every scenario in scenarios/ loads."""
    assert load_scenario(path).duration > 0


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        (
            lambda d: d["traffic"].update({"UK": {"rate": 1}}),
            "scenario traffic.UK: 'UK' is not an ISO 3166",
        ),
        (
            lambda d: d["traffic"]["GB"].update(rate=0),
            "scenario traffic.GB.rate: Input should be greater than 0",
        ),
        (
            lambda d: d["traffic"].update({"FR": {"rate": 1}}),
            "scenario traffic.FR: no provider in the route offers FR",
        ),
        (
            lambda d: d["providers"]["a"]["countries"]["GB"].pop("price"),
            "scenario providers.a.countries.GB: needs a price",
        ),
        (
            lambda d: d["providers"]["a"]["countries"]["GB"].update(delivery_rate=1.5),
            "scenario providers.a.countries.GB.delivery_rate: Input should be less than or equal to 1",
        ),
        (
            lambda d: d["providers"]["a"]["countries"]["GB"].update(colour="red"),
            "scenario providers.a.countries.GB.colour: Extra inputs are not permitted",
        ),
        (lambda d: d.update(baseline="zzz"), "scenario baseline: unknown provider 'zzz'"),
        (
            lambda d: d.update(route={"providers": ["a", "c"]}),
            "scenario route.providers: unknown provider 'c'",
        ),
        (
            lambda d: d.update(route={"strategy": "fastest"}),
            "scenario route.strategy: Input should be",
        ),
        (
            lambda d: d.update(
                events=[{"at": 10, "provider": "c", "country": "GB", "set": {"delivery_rate": 0.1}}]
            ),
            "scenario events.0.provider: unknown provider 'c'",
        ),
        (
            lambda d: d.update(
                events=[{"at": 10, "provider": "b", "country": "US", "set": {"delivery_rate": 0.1}}]
            ),
            "scenario events.0.country: b does not offer US",
        ),
        (
            lambda d: d.update(
                events=[{"at": 99, "provider": "a", "country": "GB", "set": {"delivery_rate": 0.1}}]
            ),
            "scenario events.0.at: 99 s is after the end (60 s)",
        ),
        (
            lambda d: d.update(
                events=[{"at": 10, "provider": "a", "country": "GB", "set": {"delivery_rate": 2}}]
            ),
            "scenario events.0.set.delivery_rate: Input should be less than or equal to 1",
        ),
        (
            lambda d: d.update(
                events=[{"at": 10, "provider": "a", "country": "GB", "set": {"speed": 2}}]
            ),
            "scenario events.0.set.speed: Extra inputs are not permitted",
        ),
        (
            lambda d: d.update(
                events=[
                    {"at": 20, "provider": "a", "country": "GB", "set": {"delivery_rate": 0.1}},
                    {"at": 10, "provider": "a", "country": "GB", "set": {"delivery_rate": 0.9}},
                ]
            ),
            "scenario events: must be in time order",
        ),
        (
            lambda d: d.update(duration=100_000, traffic={"GB": {"rate": 500}}),
            "scenario duration: Input should be less than or equal to 86400",
        ),
        (
            lambda d: d.update(duration=3600, traffic={"GB": {"rate": 100}}),
            "scenario traffic: 360000 messages in all; at most 200000",
        ),
        (
            lambda d: d.update(health={"breakers": {"min_samples": 0}}),
            "scenario health.breakers.min_samples: Input should be greater than or equal to 1",
        ),
        (
            lambda d: d.update(health={"windows": {}}),
            "scenario health.windows: not a health setting",
        ),
        (
            lambda d: d.update(time_scale=0.5),
            "scenario time_scale: Input should be greater than or equal to 1",
        ),
        (lambda d: d.update(name="a b"), "scenario name: String should match pattern"),
        (lambda d: d.update(extra=1), "scenario extra: Extra inputs are not permitted"),
    ],
)
def test_bad_entries_are_refused_naming_the_key(change: Any, expected: str) -> None:
    """Each problem is one line: the entry's full key, then what is wrong with it."""
    data = minimal()
    change(data)
    assert refused(data).startswith(expected)


def test_a_baseline_must_offer_every_country() -> None:
    """The single-provider baseline has to be able to send all the traffic."""
    data = minimal()
    data["traffic"]["US"] = {"rate": 1}
    data["providers"]["b"]["countries"]["US"] = {"price": 0.01}
    data["baseline"] = "a"
    assert refused(data) == "scenario baseline: a does not offer US"


def test_health_times_are_scaled_with_time() -> None:
    """Health windows and breaker timings are divided by time_scale; counts are not."""
    data = minimal()
    data["time_scale"] = 10
    data["health"] = {"breakers": {"delivery_window": 120, "min_samples": 30}}
    health = parse_scenario(data).health_settings()
    assert health.breakers.delivery_window == 12
    assert health.breakers.min_samples == 30
    assert health.window.seconds == 60  # the default 600 s, scaled


def test_files_that_are_not_scenarios_are_refused(tmp_path: Path) -> None:
    """Not YAML, not a mapping, missing or too large: one line each."""
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: [unclosed")
    with pytest.raises(ScenarioError, match="not valid YAML"):
        load_scenario(bad)
    bad.write_text("- a list\n")
    with pytest.raises(ScenarioError, match="must hold a mapping"):
        load_scenario(bad)
    with pytest.raises(ScenarioError, match="cannot read it"):
        load_scenario(tmp_path / "missing.yaml")
    bad.write_text("# " + "x" * (1024 * 1024 + 1))
    with pytest.raises(ScenarioError, match="the limit is"):
        load_scenario(bad)
    bad.write_text(yaml.safe_dump(minimal()))
    assert load_scenario(bad).name == "t"


def test_alert_durations_are_scaled_too() -> None:
    """Alerts' window and cool-down are seconds like the rest of health."""
    data = minimal()
    data["time_scale"] = 10
    health = parse_scenario(data).health_settings()
    assert (health.alerts.window, health.alerts.cool_down) == (30, 90)
    assert health.alerts.min_samples == 20


def attack_scenario() -> dict[str, Any]:
    data = minimal()
    data["traffic"]["GB"].update(kind="otp", conversion=0.8, numbers=500, spread=6)
    data["providers"]["a"]["countries"]["LV"] = {"price": 0.38}
    data["guard"] = {"mode": "enforce", "window": 600}
    data["attack"] = {"start": 10, "prefixes": [{"prefix": "+3712940", "country": "LV"}]}
    return data


def test_an_attack_scenario_is_accepted_and_its_guard_times_scaled() -> None:
    """OTP traffic with conversion, an attack section, guard settings over the defaults
    with every duration divided by time_scale (the guard's clock is the wall clock)."""
    data = attack_scenario()
    data["time_scale"] = 4
    scenario = parse_scenario(data)
    guard = scenario.guard_settings()
    assert guard.mode == "enforce"
    assert guard.window == 150  # 600 / 4
    assert guard.number.window == 150  # default 600 / 4
    assert guard.conversion.grace == 15 and guard.conversion.cooldown == 225
    assert guard.prefix.floor == 50  # counts are not durations
    assert scenario.attack is not None and scenario.attack.prefixes[0].burst == 40


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        (
            lambda d: d["traffic"]["GB"].update(kind="transactional"),
            "scenario traffic.GB.conversion: only kind: otp traffic converts",
        ),
        (
            lambda d: d["traffic"]["GB"].update(kind="sms"),
            "scenario traffic.GB.kind: Input should be",
        ),
        (
            lambda d: d["traffic"]["GB"].update(spread=9),
            "scenario traffic.GB.spread: Input should be less than or equal to 8",
        ),
        (
            lambda d: d["guard"].update(mode="off"),
            "scenario attack: needs guard.mode monitor or enforce",
        ),
        (
            lambda d: d["guard"].update(windw=60),
            "scenario guard.windw: not a guard setting",
        ),
        (
            lambda d: d["guard"].update(number={"limit": 0}),
            "scenario guard.number.limit: Input should be greater than or equal to 1",
        ),
        (
            lambda d: d["attack"]["prefixes"][0].update(country="SO"),
            "scenario attack.prefixes.0.country: no provider in the route offers it",
        ),
        (
            lambda d: d["attack"]["prefixes"][0].update(prefix="3712940"),
            "scenario attack.prefixes.0.prefix: String should match pattern",
        ),
        (
            lambda d: d["attack"].update(start=100),
            "scenario attack: start < end <= duration",
        ),
        (
            lambda d: d["attack"].update(prefixes=[]),
            "scenario attack.prefixes: List should have at least 1 item",
        ),
    ],
)
def test_bad_otp_and_attack_entries_are_refused_naming_the_key(change: Any, expected: str) -> None:
    data = attack_scenario()
    change(data)
    assert refused(data).startswith(expected)


def test_a_prefix_with_no_valid_number_is_refused_when_scheduled() -> None:
    """The numbers under a pumped prefix must be the country's: else a clear error."""
    from smsrelay.simulate.traffic import schedule

    data = attack_scenario()
    data["attack"]["prefixes"][0]["prefix"] = "+3719999"
    with pytest.raises(ScenarioError, match=r"no valid LV number starts with \+3719999"):
        schedule(parse_scenario(data))


def test_otp_traffic_spreads_over_many_prefixes_and_the_attack_is_scheduled() -> None:
    from smsrelay.simulate.traffic import schedule

    arrivals = schedule(parse_scenario(attack_scenario()))
    legit = {a.to[:-4] for a in arrivals if a.pumped is None}
    pumped = [a for a in arrivals if a.pumped is not None]
    assert len(legit) > 20
    assert pumped and all(a.to.startswith("+3712940") and a.t >= 10 for a in pumped)
