"""The limits' and health's configuration keys: read from YAML and SMSRELAY_*, checked, wired."""

from __future__ import annotations

import os
from decimal import Decimal
from pathlib import Path

import pytest

from smsrelay import settings
from smsrelay.errors import ConfigError
from smsrelay.limits.build import build_rate_limiter, build_spend_caps
from smsrelay.limits.caps import LocalSpendCaps
from smsrelay.limits.rates import LocalRateLimiter
from smsrelay.limits.redis_caps import RedisSpendCaps
from smsrelay.limits.redis_rates import RedisRateLimiter


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """No SMSRELAY_* variable of the calling shell reaches these tests."""
    for key in list(os.environ):
        if key.startswith("SMSRELAY_"):
            monkeypatch.delenv(key)


README_EXAMPLE = """
redis_url: redis://127.0.0.1:6379/0
providers:
  twilio:
    type: simulator
    rate_limit: {per_second: 100, burst: 100, per_sender: {per_second: 1}}
routes: {"*": [twilio]}
limits: {max_wait: 0.5, expected_workers: 4}
spend_caps:
  currency: USD
  total: {day: 500, month: 10000}
  providers: {twilio: {day: 300}}
  countries: {IN: {day: 50}}
health:
  breakers: {failures: 5, timeouts: 2, cool_down: 30, min_samples: 30, min_delivery_rate: 0.5}
"""


def test_the_readme_example_loads(tmp_path: Path) -> None:
    """The README's example configures Redis, a provider's rate limit, caps and breakers."""
    path = tmp_path / "smsrelay.yaml"
    path.write_text(README_EXAMPLE)
    s = settings.load(path)
    limit = s.provider_settings()["twilio"].rate_limit
    assert limit is not None and limit.per_second == 100 and limit.per_sender is not None
    assert s.redis_url == "redis://127.0.0.1:6379/0" and s.limits.expected_workers == 4
    assert s.spend_caps.countries["IN"].day == Decimal(50) and s.spend_caps.any
    assert s.health.breakers.timeouts == 2


def test_defaults_limit_nothing() -> None:
    """Without the keys: no Redis, no rate limit, no cap."""
    s = settings.load()
    assert s.redis_url is None and not s.spend_caps.any
    assert s.provider_settings()["simulator"].rate_limit is None


def test_variables_set_the_keys(monkeypatch: pytest.MonkeyPatch) -> None:
    """SMSRELAY_REDIS_URL, SMSRELAY_SPEND_CAPS__TOTAL and SMSRELAY_HEALTH__BREAKERS are read."""
    monkeypatch.setenv("SMSRELAY_REDIS_URL", "redis://r:6379/1")
    monkeypatch.setenv("SMSRELAY_SPEND_CAPS__TOTAL", '{"day": "5"}')
    monkeypatch.setenv("SMSRELAY_HEALTH__BREAKERS", '{"timeouts": 3}')
    s = settings.load()
    assert s.redis_url == "redis://r:6379/1" and s.spend_caps.total.day == Decimal(5)
    assert s.health.breakers.timeouts == 3


@pytest.mark.parametrize(
    ("overrides", "key"),
    [
        ({"spend_caps": {"countries": {"UK!": {"day": 1}}}}, "spend_caps.countries"),
        ({"spend_caps": {"total": {"day": -1}}}, "spend_caps.total.day"),
        (
            {"providers": {"simulator": {"rate_limit": {"per_second": 0}}}},
            "providers.simulator.rate_limit.per_second",
        ),
        ({"health": {"window": {"seconds": 10, "bucket_seconds": 60}}}, "health.window"),
        ({"limits": {"lease_seconds": 0}}, "limits.lease_seconds"),
    ],
)
def test_bad_values_stop_start_up_naming_the_key(overrides: dict[str, object], key: str) -> None:
    """A wrong value is a ConfigError that names its key."""
    with pytest.raises(ConfigError) as caught:
        settings.load(**overrides)
    assert caught.value.key == key


async def test_wiring_picks_redis_only_with_a_url() -> None:
    """redis_url set: the Redis forms; none: the in-process forms (chosen once, at wiring)."""
    s = settings.load(providers={"simulator": {"rate_limit": {"per_second": 5}}})
    limits = {n: p.rate_limit for n, p in s.provider_settings().items()}
    assert isinstance(build_rate_limiter(None, limits, s.limits), LocalRateLimiter)
    assert isinstance(build_spend_caps(None, s.spend_caps, s.limits), LocalSpendCaps)
    shared = build_rate_limiter("redis://127.0.0.1:6379/0", limits, s.limits)
    caps = build_spend_caps("redis://127.0.0.1:6379/0", s.spend_caps, s.limits)
    assert isinstance(shared, RedisRateLimiter) and isinstance(caps, RedisSpendCaps)
    await shared.close()
    await caps.close()
