"""The generic ``http`` provider: its contract against an in-house gateway fake, its receipts."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from pydantic import ValidationError

from smsrelay.errors import (
    AuthenticationFailed,
    BadSignature,
    PermanentProviderError,
    ProviderError,
    RateLimited,
    RecipientRejected,
    StaleReceipt,
    TransientProviderError,
)
from smsrelay.models import ReceiptStatus, SendRequest
from smsrelay.providers.base import Webhook
from smsrelay.providers.http import HttpGatewayProvider, HttpGatewaySettings
from tests.fakes.http_gateway import SEND_PATH, HttpGatewayFake
from tests.providers.contract import (
    TO,
    ProviderContractTest,
    assert_table_class,
    message,
    with_header,
)

OTHER = "+14155550100"
SECRET = "receipt-secret-3f9a"
NOW = datetime(2026, 11, 28, 12, 0, tzinfo=UTC)
TEMPLATE = {
    "reference": "{id}",
    "recipient": "{to}",
    "text": "{body}",
    "sender": "{from}",
    "meta": {"kind": "{kind}", "source": "smsrelay", "labels": ["sms-{kind}"]},
}


def settings_for(fake: HttpGatewayFake, **overrides: Any) -> HttpGatewaySettings:
    """Settings for the fake gateway's API."""
    values: dict[str, Any] = {
        "url": fake.url + SEND_PATH,
        "headers": {"X-Api-Key": fake.api_key},
        "body_template": TEMPLATE,
        "message_id_path": "data.id",
        "error_code_path": "error.code",
        "error_message_path": "error.message",
        "recipient_error_codes": ["INVALID_RECIPIENT", "UNSUBSCRIBED"],
        **overrides,
    }
    return HttpGatewaySettings(**values)


def receipt_settings(**overrides: Any) -> HttpGatewaySettings:
    """Settings for receipts only (the send side points nowhere)."""
    values: dict[str, Any] = {
        "url": "http://127.0.0.1:9/v1/sms",
        "receipt_secret": SECRET,
        "receipt_message_id_path": "data.id",
        "receipt_reference_path": "data.reference",
        "receipt_status_path": "data.state",
        "receipt_status_map": {
            "DELIVRD": "delivered",
            "UNDELIV": "undelivered",
            "REJECTD": "failed",
        },
        "receipt_error_code_path": "data.error",
        **overrides,
    }
    return HttpGatewaySettings(**values)


class TestHttpGatewayContract(ProviderContractTest):
    """The http provider against an in-house gateway; no published spec exists for it."""

    provider_type = "http"
    spec = None

    def serve(self) -> HttpGatewayFake:
        return HttpGatewayFake()

    def settings(self, fake: HttpGatewayFake) -> HttpGatewaySettings:
        return settings_for(fake)

    def arrange_failure(self, fake: HttpGatewayFake, to: str, kind: str) -> None:
        status, code = {"recipient": (422, "UNSUBSCRIBED"), "transient": (503, "UNAVAILABLE")}[kind]
        fake.fail(to, status, code, f"{to} cannot be reached now")


@pytest.fixture
async def fake() -> AsyncIterator[HttpGatewayFake]:
    async with HttpGatewayFake() as running:
        yield running


@pytest.fixture
async def gateway(fake: HttpGatewayFake) -> AsyncIterator[HttpGatewayProvider]:
    provider = HttpGatewayProvider("gateway", settings_for(fake))
    yield provider
    await provider.close()


async def _send_with(fake: HttpGatewayFake, request: SendRequest, **overrides: Any) -> Any:
    provider = HttpGatewayProvider("gateway", settings_for(fake, **overrides))
    try:
        return await provider.send(request)
    finally:
        await provider.close()


# -- the wire format ------------------------------------------------------------------------


async def test_send_posts_the_filled_template_with_the_headers(
    fake: HttpGatewayFake, gateway: HttpGatewayProvider
) -> None:
    """A send is one JSON POST of the template, placeholders filled, nested ones too."""
    result = await gateway.send(message(kind="otp", **{"from": "ACME"}))
    (request,) = fake.received
    assert (request.method, request.content_type) == ("POST", "application/json")
    assert request.headers["X-Api-Key"] == fake.api_key
    assert json.loads(request.body) == {
        "reference": "m-1",
        "recipient": TO,
        "text": "Your code is 123456",
        "sender": "ACME",
        "meta": {"kind": "otp", "source": "smsrelay", "labels": ["sms-otp"]},
    }
    assert result.provider_message_id == json.loads(request.answer)["data"]["id"]


async def test_a_lone_placeholder_without_a_value_is_null(
    fake: HttpGatewayFake, gateway: HttpGatewayProvider
) -> None:
    """Without a sender, "{from}" becomes JSON null rather than an empty string."""
    await gateway.send(message())
    assert json.loads(fake.received[0].body)["sender"] is None


async def test_values_cannot_break_out_of_their_json_string(
    fake: HttpGatewayFake, gateway: HttpGatewayProvider
) -> None:
    """Quotes, backslashes and placeholder-like text in a body arrive verbatim."""
    body = 'Hi "there"\\ }, "recipient": "+10000000000", {to} {id}'
    await gateway.send(message(body=body))
    sent = json.loads(fake.received[0].body)
    assert sent["text"] == body
    assert sent["recipient"] == TO


async def test_mixed_and_unknown_placeholders(fake: HttpGatewayFake) -> None:
    """Placeholders inside longer strings are filled; unknown {names} stay as written."""
    template = {**TEMPLATE, "text": "[{kind}] {body} {unknown}", "sender": "from:{from}"}
    await _send_with(fake, message(), body_template=template)
    sent = json.loads(fake.received[0].body)
    assert sent["text"] == "[transactional] Your code is 123456 {unknown}"
    assert sent["sender"] == "from:"


async def test_put_is_used_when_configured(fake: HttpGatewayFake) -> None:
    """method: PUT sends the same request with PUT."""
    await _send_with(fake, message(), method="PUT")
    assert fake.received[0].method == "PUT"


async def test_without_an_id_path_our_id_is_the_providers(fake: HttpGatewayFake) -> None:
    """With message_id_path null the request's own id identifies the message."""
    result = await _send_with(fake, message(), message_id_path=None)
    assert result.provider_message_id == "m-1"


async def test_success_without_an_id_is_permanent(fake: HttpGatewayFake) -> None:
    """A success answer without the configured id is permanent: the gateway may have sent it."""
    with pytest.raises(PermanentProviderError) as caught:
        await _send_with(fake, message(), message_id_path="data.nothing")
    assert caught.value.code == "bad-response"


# -- errors ---------------------------------------------------------------------------------


async def _error_for(
    fake: HttpGatewayFake, status: int, code: str, **overrides: Any
) -> ProviderError:
    fake.fail(
        OTHER, status, code, f"{OTHER} refused", retry_after=overrides.pop("retry_after", None)
    )
    with pytest.raises(ProviderError) as caught:
        await _send_with(fake, message(OTHER), **overrides)
    return caught.value


@pytest.mark.parametrize(
    ("status", "code", "expected"),
    [
        (422, "UNSUBSCRIBED", RecipientRejected),
        (500, "UNSUBSCRIBED", RecipientRejected),
        (400, "NO_CREDIT", PermanentProviderError),
        (403, "SUSPENDED", AuthenticationFailed),
        (503, "UNAVAILABLE", TransientProviderError),
        (302, "MOVED", PermanentProviderError),
    ],
)
async def test_statuses_and_codes_map_onto_the_error_tree(
    fake: HttpGatewayFake, status: int, code: str, expected: type[ProviderError]
) -> None:
    """Recipient codes win; then transient, auth and permanent statuses; others are permanent."""
    error = await _error_for(fake, status, code)
    assert_table_class(error, expected, code)


async def test_rate_limit_carries_retry_after(fake: HttpGatewayFake) -> None:
    """A 429 raises RateLimited carrying Retry-After in seconds."""
    error = await _error_for(fake, 429, "SLOW_DOWN", retry_after=12)
    assert isinstance(error, RateLimited)
    assert error.retry_after == 12.0


async def test_configured_status_lists_are_used(fake: HttpGatewayFake) -> None:
    """A 408 listed in transient_statuses is transient; a 202 outside success_statuses is not success."""
    error = await _error_for(fake, 408, "TIMEOUT", transient_statuses=[408, "500-599"])
    assert type(error) is TransientProviderError
    with pytest.raises(PermanentProviderError) as caught:
        await _send_with(fake, message(), success_statuses=[200])
    assert caught.value.code == "http-202"


async def test_the_gateways_own_refusals_map_too(fake: HttpGatewayFake) -> None:
    """The fake's 422 for a bad number is RecipientRejected; its 401 for a bad key AuthenticationFailed."""
    with pytest.raises(RecipientRejected):
        await _send_with(fake, message().model_copy(update={"to": "14155550123"}))
    with pytest.raises(AuthenticationFailed) as caught:
        await _send_with(fake, message(), headers={"X-Api-Key": "wrong"})
    assert caught.value.code == "UNAUTHORIZED"


async def test_error_without_code_path_uses_the_status(fake: HttpGatewayFake) -> None:
    """Without error_code_path the code is http-<status>."""
    error = await _error_for(fake, 400, "NO_CREDIT", error_code_path=None)
    assert error.code == "http-400"


async def test_error_text_masks_the_number(fake: HttpGatewayFake) -> None:
    """The gateway's message quoting the number is carried masked."""
    error = await _error_for(fake, 400, "NO_CREDIT")
    assert OTHER not in str(error)
    assert OTHER[-2:] in str(error)


# -- settings -------------------------------------------------------------------------------


def test_header_values_are_secret_in_the_repr() -> None:
    """Configured header values (API keys) do not show in the settings' repr."""
    config = HttpGatewaySettings(
        url="https://gw.example.com/sms", headers={"X-Api-Key": "k-123456"}
    )
    assert "k-123456" not in repr(config)


@pytest.mark.parametrize(
    "overrides",
    [
        {"transient_statuses": ["5xx"]},
        {"success_statuses": ["299-200"]},
        {"permanent_statuses": [700]},
        {"receipt_username": "relay"},
        {"url": "gw.example.com/sms"},
        {"method": "GET"},
    ],
)
def test_bad_settings_are_refused(overrides: dict[str, Any]) -> None:
    """Malformed status ranges, half Basic credentials, a bare host or GET are refused at start."""
    with pytest.raises(ValidationError):
        HttpGatewaySettings(**{"url": "https://gw.example.com/sms", **overrides})


# -- receipts -------------------------------------------------------------------------------

RECEIPT = {"data": {"id": "gw-1", "reference": "m-1", "state": "DELIVRD", "error": None}}


def signed(payload: object, key: str = SECRET, stamp: str | None = None, **headers: str) -> Webhook:
    body = json.dumps(payload).encode()
    message = body if stamp is None else stamp.encode() + b"." + body
    signature = hmac.new(key.encode(), message, hashlib.sha256).hexdigest()
    found = {"x-smsrelay-signature": signature, **{k.lower(): v for k, v in headers.items()}}
    if stamp is not None:
        found["x-smsrelay-timestamp"] = stamp
    return Webhook("POST", "https://relay.example.com/v1/receipts/gateway", found, body)


def provider(**overrides: Any) -> HttpGatewayProvider:
    return HttpGatewayProvider("gateway", receipt_settings(**overrides))


def test_correctly_signed_receipt_is_accepted_and_parsed() -> None:
    """A body with a valid HMAC-SHA256 signature verifies and yields its receipt."""
    gateway = provider()
    webhook = signed(RECEIPT)
    gateway.verify_receipt(webhook, NOW)
    (receipt,) = gateway.parse_receipts(webhook)
    assert (receipt.provider_message_id, receipt.message_id) == ("gw-1", "m-1")
    assert (receipt.status, receipt.provider_status) == (ReceiptStatus.DELIVERED, "DELIVRD")


def test_sha256_prefix_is_accepted() -> None:
    """A signature written as sha256=<hex> verifies too."""
    webhook = signed(RECEIPT)
    header = "sha256=" + webhook.headers["x-smsrelay-signature"]
    provider().verify_receipt(with_header(webhook, "x-smsrelay-signature", header), NOW)


def test_tampered_body_is_refused() -> None:
    """Changing one byte of a signed body fails verification."""
    webhook = signed(RECEIPT)
    tampered = Webhook(
        "POST", webhook.url, webhook.headers, webhook.body.replace(b"DELIVRD", b"UNDELIV")
    )
    with pytest.raises(BadSignature):
        provider().verify_receipt(tampered, NOW)


def test_wrong_key_is_refused() -> None:
    """A body signed with another key fails verification."""
    with pytest.raises(BadSignature):
        provider().verify_receipt(signed(RECEIPT, key="another-secret"), NOW)


def test_missing_signature_header_is_refused() -> None:
    """A receipt without the signature header is refused."""
    webhook = with_header(signed(RECEIPT), "x-smsrelay-signature", None)
    with pytest.raises(BadSignature, match="X-Smsrelay-Signature"):
        provider().verify_receipt(webhook, NOW)


def test_signature_header_name_is_configurable() -> None:
    """signature_header names the header the signature is read from."""
    webhook = signed(RECEIPT)
    moved = with_header(webhook, "x-gw-sig", webhook.headers["x-smsrelay-signature"])
    provider(signature_header="X-Gw-Sig").verify_receipt(moved, NOW)
    with pytest.raises(BadSignature):
        provider(signature_header="X-Gw-Sig").verify_receipt(webhook, NOW)


def test_fresh_timestamped_receipt_is_accepted() -> None:
    """With a timestamp header, a receipt signed over <timestamp>.<body> within the window verifies."""
    gateway = provider(timestamp_header="X-Smsrelay-Timestamp")
    stamp = str(int((NOW - timedelta(seconds=299)).timestamp()))
    gateway.verify_receipt(signed(RECEIPT, stamp=stamp), NOW)
    gateway.verify_receipt(signed(RECEIPT, stamp=(NOW + timedelta(seconds=60)).isoformat()), NOW)


@pytest.mark.parametrize("offset", [-301, 3600])
def test_stale_timestamp_is_refused(offset: int) -> None:
    """A correctly signed receipt whose timestamp is outside the replay window is stale."""
    gateway = provider(timestamp_header="X-Smsrelay-Timestamp")
    stamp = str(int((NOW + timedelta(seconds=offset)).timestamp()))
    with pytest.raises(StaleReceipt):
        gateway.verify_receipt(signed(RECEIPT, stamp=stamp), NOW)


def test_replay_window_is_configurable() -> None:
    """replay_window sets the window in seconds."""
    gateway = provider(timestamp_header="X-Smsrelay-Timestamp", replay_window=30)
    stamp = str(int((NOW - timedelta(seconds=31)).timestamp()))
    with pytest.raises(StaleReceipt):
        gateway.verify_receipt(signed(RECEIPT, stamp=stamp), NOW)


def test_old_signature_under_a_fresh_timestamp_is_refused() -> None:
    """The timestamp is signed: replaying an old body with a new timestamp fails."""
    gateway = provider(timestamp_header="X-Smsrelay-Timestamp")
    old = signed(RECEIPT, stamp=str(int((NOW - timedelta(hours=1)).timestamp())))
    replayed = with_header(old, "x-smsrelay-timestamp", str(int(NOW.timestamp())))
    with pytest.raises(BadSignature):
        gateway.verify_receipt(replayed, NOW)


def test_missing_timestamp_is_refused() -> None:
    """When a timestamp header is configured, a receipt without it is refused."""
    gateway = provider(timestamp_header="X-Smsrelay-Timestamp")
    with pytest.raises(BadSignature, match="X-Smsrelay-Timestamp"):
        gateway.verify_receipt(signed(RECEIPT), NOW)


def test_basic_credentials_are_checked() -> None:
    """With receipt_username/password, the right Basic credentials verify and others do not."""
    gateway = provider(receipt_secret=None, receipt_username="relay", receipt_password="pw-9")
    right = "Basic " + base64.b64encode(b"relay:pw-9").decode()
    wrong = "Basic " + base64.b64encode(b"relay:pw-8").decode()
    body = json.dumps(RECEIPT).encode()
    gateway.verify_receipt(Webhook("POST", "https://r/", {"authorization": right}, body), NOW)
    for headers in ({"authorization": wrong}, {}):
        with pytest.raises(BadSignature):
            gateway.verify_receipt(Webhook("POST", "https://r/", headers, body), NOW)


def test_receipts_are_refused_without_a_configured_check() -> None:
    """With neither a secret nor Basic credentials every webhook is refused."""
    with pytest.raises(BadSignature):
        provider(receipt_secret=None).verify_receipt(signed(RECEIPT), NOW)


def test_a_list_of_receipts_is_parsed_with_the_status_map() -> None:
    """A JSON list gives one receipt each: mapped, plain, unknown (pending), and with an error code."""
    items = [
        {"data": {"id": "gw-1", "state": "UNDELIV", "error": 34}},
        {"data": {"id": "gw-2", "state": "failed"}},
        {"data": {"id": "gw-3", "state": "ENROUTE"}},
        {"data": {"reference": "m-4", "state": "REJECTD", "error": "E12"}},
        {"data": {"state": "DELIVRD"}},
        "not a receipt",
    ]
    receipts = provider().parse_receipts(signed(items))
    assert [(r.provider_message_id, r.message_id, r.status, r.error_code) for r in receipts] == [
        ("gw-1", None, ReceiptStatus.UNDELIVERED, "34"),
        ("gw-2", None, ReceiptStatus.FAILED, None),
        ("gw-3", None, ReceiptStatus.PENDING, None),
        (None, "m-4", ReceiptStatus.FAILED, "E12"),
    ]


def test_a_body_that_is_not_json_has_no_receipts() -> None:
    """A verified body that is not JSON yields no receipts rather than an error."""
    webhook = Webhook("POST", "https://r/", {}, b"id=gw-1&status=DELIVRD")
    assert provider().parse_receipts(webhook) == []
