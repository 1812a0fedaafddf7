"""Providers' answers carry what a message cost, where they say it: into SendResult.cost."""

from __future__ import annotations

import json
from decimal import Decimal

import pytest

from smsrelay.providers.base import currency_code, money
from smsrelay.providers.infobip import InfobipProvider, InfobipSettings
from smsrelay.providers.twilio import TwilioProvider, TwilioSettings
from smsrelay.providers.vonage import VonageProvider, VonageSettings


@pytest.mark.parametrize(
    ("text", "value"),
    [("-0.00750", Decimal("0.00750")), ("0.0333", Decimal("0.0333")), (0.05, Decimal("0.05")),
     (None, None), ("", None), ("1e9", None), ("NaN", None), (True, None), ("9" * 40, None)],
)  # fmt: skip
def test_money_reads_a_charge_or_nothing(text: object, value: Decimal | None) -> None:
    """A provider's charge is a positive Decimal; anything odd is no cost, never a wrong one."""
    assert money(text) == value


def test_currency_code_is_iso_4217_or_nothing() -> None:
    """USD and usd are USD; a long or odd string is None."""
    assert [currency_code(v) for v in ("USD", "usd", "dollars", None)] == ["USD", "USD", None, None]


def test_twilio_price_and_unit() -> None:
    """Twilio's negative price and price_unit are the cost; a null price is none."""
    twilio = TwilioProvider(
        "twilio", TwilioSettings(account_sid="AC" + "0" * 32, auth_token="t", sender="+1415")
    )
    billed = {"sid": "SM1", "num_segments": "1", "price": "-0.00790", "price_unit": "USD"}
    result = twilio._result(json.dumps(billed).encode())
    assert (result.cost, result.currency) == (Decimal("0.00790"), "USD")
    unbilled = twilio._result(json.dumps({"sid": "SM1", "price": None}).encode())
    assert unbilled.cost is None


def test_vonage_message_price_summed_over_parts() -> None:
    """Vonage's per-part message-price adds up to the message's cost."""
    vonage = VonageProvider(
        "vonage", VonageSettings(api_key="abcd1234", api_secret="secret12", sender="ACME")
    )
    answer = {
        "message-count": "2",
        "messages": [
            {"message-id": "0A1", "status": "0", "message-price": "0.03330000"},
            {"message-id": "0A2", "status": "0", "message-price": "0.03330000"},
        ],
    }
    assert vonage._result(answer).cost == Decimal("0.06660000")


def test_infobip_price_per_message() -> None:
    """Infobip's price.pricePerMessage and currency, where its answer has them."""
    infobip = InfobipProvider("infobip", InfobipSettings(api_key="k"))
    answer = {
        "messages": [
            {
                "messageId": "m-1",
                "status": {"groupName": "PENDING", "name": "PENDING_ACCEPTED"},
                "price": {"pricePerMessage": 0.01, "currency": "EUR"},
            }
        ]
    }
    result = infobip._result(json.dumps(answer).encode())
    assert (result.cost, result.currency) == (Decimal("0.01"), "EUR")
