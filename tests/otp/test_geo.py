"""Geo permissions: a destination country outside the rules is rejected, never sent."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from smsrelay import settings as config
from smsrelay.client import AsyncClient
from smsrelay.models import validate_request
from smsrelay.otp.geo import GeoRules, GeoSettings
from tests.conftest import eventually
from tests.integration.harness import event_log, running_worker, simulator

GB = "+447400123456"
US = "+14155550123"


def _rules(**data: object) -> GeoRules:
    return GeoRules(GeoSettings.model_validate(data))


def _request(to: str, kind: str = "otp") -> object:
    return validate_request({"id": "g-1", "to": to, "body": "code 1", "kind": kind})


def test_otp_deny_blocks_otps_only() -> None:
    """geo.otp.deny refuses OTPs to the country and lets other kinds through."""
    rules = _rules(otp={"deny": ["GB"]})
    blocked = rules.refusal(_request(GB))  # type: ignore[arg-type]
    assert blocked is not None and blocked.code == "geo-otp-deny"
    assert "GB" in blocked.message and not blocked.retryable
    assert rules.refusal(_request(GB, "marketing")) is None  # type: ignore[arg-type]
    assert rules.refusal(_request(US)) is None  # type: ignore[arg-type]


def test_all_allow_list_blocks_every_other_country() -> None:
    """A non-empty geo.all.allow refuses any other country, whatever the kind."""
    rules = _rules(all={"allow": ["US"]})
    blocked = rules.refusal(_request(GB, "transactional"))  # type: ignore[arg-type]
    assert blocked is not None and blocked.code == "geo-all-allow"
    assert rules.refusal(_request(US)) is None  # type: ignore[arg-type]


def test_no_rules_is_inactive() -> None:
    """Without rules the dispatcher skips the check entirely."""
    assert not _rules().active and _rules(otp={"allow": ["US"]}).active


def test_country_codes_are_validated_at_start() -> None:
    """A country that is not two capital letters is a configuration error."""
    with pytest.raises((ValidationError, config.ConfigError)):
        config.load(geo={"otp": {"deny": ["gb1"]}})


async def test_blocked_otp_ends_rejected_and_is_never_sent(amqp_url: str, sqlite_url: str) -> None:
    """With geo.otp.deny [GB], an OTP to GB ends rejected (geo-otp-deny); a GB marketing SMS is sent."""
    async with (
        event_log(amqp_url) as events,
        running_worker(amqp_url, sqlite_url, geo={"otp": {"deny": ["GB"]}}) as rt,
    ):
        async with AsyncClient(amqp_url) as client:
            await client.send(id="otp-gb", to=GB, body="code 1", kind="otp")
            await client.send(id="mkt-gb", to=GB, body="sale", kind="marketing")
        await eventually(lambda: events.states("otp-gb") == ["rejected"])
        await eventually(lambda: events.states("mkt-gb") == ["sent"])
        assert [r.id for r in simulator(rt, "simulator").sent] == ["mkt-gb"]
        record = await rt.store.get("otp-gb")
    assert events.of("otp-gb")[0]["error"]["code"] == "geo-otp-deny"
    assert record is not None and record.attempts == [] and record.error_code == "geo-otp-deny"
