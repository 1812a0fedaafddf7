"""Twilio status callbacks: the X-Twilio-Signature check and the form's reading."""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime
from urllib.parse import urlencode

import pytest

from smsrelay.errors import BadSignature
from smsrelay.models import ReceiptStatus
from smsrelay.providers import Webhook
from smsrelay.providers.twilio import TwilioProvider, TwilioSettings, twilio_signature

NOW = datetime(2026, 12, 5, tzinfo=UTC)
URL = "https://sms.example.com/v1/receipts/twilio"

# The worked example of Twilio's own request validator (twilio-python's tests).
EXAMPLE_URL = "https://mycompany.com/myapp.php?foo=1&bar=2"
EXAMPLE_PARAMS = {
    "CallSid": "CA1234567890ABCDE",
    "Caller": "+14158675309",
    "Digits": "1234",
    "From": "+14158675309",
    "To": "+18005551212",
}
EXAMPLE_SIGNATURE = "RSOYDt4T1cUTdK1PDd93/VVr8B8="


def provider(token: str = "12345") -> TwilioProvider:
    """A Twilio provider whose auth token is ``token``."""
    settings = TwilioSettings(account_sid="AC" + "0" * 32, auth_token=token, sender="+14155550100")
    return TwilioProvider("twilio", settings)


def webhook(params: dict[str, str], signature: str | None, url: str = URL) -> Webhook:
    """A form POST as Twilio sends it."""
    headers = {"content-type": "application/x-www-form-urlencoded"}
    if signature is not None:
        headers["x-twilio-signature"] = signature
    return Webhook("POST", url, headers, urlencode(params).encode())


def signed(params: dict[str, str], token: str = "12345", url: str = URL) -> Webhook:
    """A webhook signed with ``token``."""
    return webhook(params, twilio_signature(token.encode(), url, sorted(params.items())), url)


CALLBACK = {
    "MessageSid": "SM" + "a" * 32,
    "MessageStatus": "delivered",
    "AccountSid": "AC" + "0" * 32,
}


def test_twilios_worked_example_verifies() -> None:
    """The signature from Twilio's own validator example is accepted."""
    provider().verify_receipt(webhook(EXAMPLE_PARAMS, EXAMPLE_SIGNATURE, EXAMPLE_URL), NOW)


def test_signed_callback_verifies() -> None:
    """A callback signed with the account's auth token is accepted."""
    provider("tok").verify_receipt(signed(CALLBACK, "tok"), NOW)


def test_tampered_body_is_refused() -> None:
    """Changing a field after signing breaks the signature."""
    hook = signed(CALLBACK)
    forged = Webhook(
        hook.method, hook.url, hook.headers, hook.body.replace(b"delivered", b"failed")
    )
    with pytest.raises(BadSignature, match="does not verify"):
        provider().verify_receipt(forged, NOW)


def test_signature_with_another_token_is_refused() -> None:
    """A callback signed with a different auth token is refused."""
    with pytest.raises(BadSignature):
        provider("right").verify_receipt(signed(CALLBACK, "wrong"), NOW)


def test_missing_signature_is_refused() -> None:
    """Without X-Twilio-Signature nothing is trusted."""
    with pytest.raises(BadSignature, match="missing"):
        provider().verify_receipt(webhook(CALLBACK, None), NOW)


def test_signature_for_another_url_is_refused() -> None:
    """The URL is signed: a callback meant for another endpoint does not verify here."""
    hook = signed(CALLBACK, url="https://elsewhere.example.com/hook")
    moved = Webhook(hook.method, URL, hook.headers, hook.body)
    with pytest.raises(BadSignature):
        provider().verify_receipt(moved, NOW)


def test_url_is_also_tried_with_its_default_port() -> None:
    """As Twilio's validator does, https://host/ and https://host:443/ are the same URL."""
    hook = signed(CALLBACK, url="https://sms.example.com:443/v1/receipts/twilio")
    provider().verify_receipt(Webhook(hook.method, URL, hook.headers, hook.body), NOW)


def test_json_body_is_checked_through_body_sha256() -> None:
    """A JSON callback is signed via the URL's bodySHA256, which must match the body."""
    body = b'{"MessageSid": "SM1"}'
    url = f"{URL}?bodySHA256={hashlib.sha256(body).hexdigest()}"
    signature = twilio_signature(b"12345", url, [])
    query = {"bodySHA256": hashlib.sha256(body).hexdigest()}
    good = Webhook("POST", url, {"x-twilio-signature": signature}, body, query)
    provider().verify_receipt(good, NOW)
    with pytest.raises(BadSignature, match="bodySHA256"):
        provider().verify_receipt(Webhook("POST", url, good.headers, b"{}", query), NOW)


@pytest.mark.parametrize(
    ("twilio_status", "status"),
    [
        ("delivered", ReceiptStatus.DELIVERED),
        ("undelivered", ReceiptStatus.UNDELIVERED),
        ("failed", ReceiptStatus.FAILED),
        ("sent", ReceiptStatus.PENDING),
        ("queued", ReceiptStatus.PENDING),
        ("accepted", ReceiptStatus.PENDING),
        ("sending", ReceiptStatus.PENDING),
    ],
)
def test_message_status_maps_onto_receipt_status(twilio_status: str, status: ReceiptStatus) -> None:
    """Twilio's MessageStatus becomes the normalised status; the raw value is kept."""
    [receipt] = provider().parse_receipts(signed({**CALLBACK, "MessageStatus": twilio_status}))
    assert receipt.status is status
    assert receipt.provider_status == twilio_status
    assert receipt.provider_message_id == CALLBACK["MessageSid"]


def test_undelivered_callback_carries_the_error_code() -> None:
    """ErrorCode (a 30xxx carrier code) is kept with the receipt."""
    params = {**CALLBACK, "MessageStatus": "undelivered", "ErrorCode": "30003"}
    [receipt] = provider().parse_receipts(signed(params))
    assert receipt.error_code == "30003"


def test_callback_reports_the_whole_message() -> None:
    """Twilio reports per message: no part, NumSegments (when sent) as the part count, the carrier's done date."""
    params = {**CALLBACK, "NumSegments": "3", "RawDlrDoneDate": "2612051230"}
    [receipt] = provider().parse_receipts(signed(params))
    assert receipt.part is None and receipt.parts == 3
    assert receipt.at == datetime(2026, 12, 5, 12, 30, tzinfo=UTC)


def test_form_without_a_status_holds_no_receipt() -> None:
    """A webhook that is not a status callback yields nothing to record."""
    assert provider().parse_receipts(signed({"MessageSid": "SM1"})) == []


def test_legacy_sms_fields_are_read() -> None:
    """SmsSid/SmsStatus, which Twilio still sends beside the Message* fields, are read too."""
    [receipt] = provider().parse_receipts(signed({"SmsSid": "SM2", "SmsStatus": "delivered"}))
    assert receipt.provider_message_id == "SM2" and receipt.status is ReceiptStatus.DELIVERED
