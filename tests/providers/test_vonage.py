"""The Vonage adapter: its contract with Vonage's sms.yml, its errors, and its signed receipts."""

from __future__ import annotations

import copy
import json
from dataclasses import replace
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlencode

import pytest
from openapi_core import OpenAPI
from openapi_core.exceptions import OpenAPIError
from openapi_core.testing import MockResponse
from pydantic import ValidationError

from smsrelay.errors import (
    AuthenticationFailed,
    BadSignature,
    PermanentProviderError,
    ProviderError,
    RateLimited,
    StaleReceipt,
    TransientProviderError,
)
from smsrelay.models import ReceiptStatus
from smsrelay.providers.base import Webhook
from smsrelay.providers.vonage import ERRORS, VonageProvider, VonageSettings, signature
from tests.fakes.vonage import SIGNATURE_SECRET, VonageFake, dlr, signed_receipt
from tests.providers.contract import (
    TO,
    CapturedRequest,
    ContractError,
    ProviderContractTest,
    adapter_fixture,
    as_openapi_request,
    assert_table_class,
    message,
    send_error,
    send_error_with,
    send_with,
    serve_fixture,
    spec_document,
)

SPEC = "vonage/sms.yml"
SENDER = "AcmeInc"
OTHER = "+14155550100"
NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
VECTORS = Path(__file__).parent / "fixtures" / "vonage" / "signature_vectors.json"


def settings_for(fake: VonageFake, **overrides: Any) -> VonageSettings:
    """Settings that point the adapter at ``fake`` with its credentials."""
    values: dict[str, Any] = {
        "base_url": fake.url,
        "api_key": fake.api_key,
        "api_secret": fake.api_secret,
        "sender": SENDER,
        "signature_secret": SIGNATURE_SECRET,
        **overrides,
    }
    return VonageSettings(**values)


def form_of(request: CapturedRequest) -> dict[str, str]:
    return dict(parse_qsl(request.body.decode()))


def _answer_spec() -> OpenAPI:
    # sms.yml answers 200 with oneOf [SMS, Error]; neither schema requires a property,
    # so every answer matches both and oneOf refuses it. anyOf is what the spec means.
    document = copy.deepcopy(spec_document(SPEC))
    content = document["paths"]["/{format}"]["post"]["responses"]["200"]["content"]
    schema = content["application/json"]["schema"]
    schema["anyOf"] = schema.pop("oneOf")
    return OpenAPI.from_dict(document)


class TestVonageContract(ProviderContractTest):
    """Vonage's SMS API as its published sms.yml states it."""

    provider_type = "vonage"
    spec = SPEC
    prism_base_path = "/sms"

    def serve(self) -> VonageFake:
        return VonageFake()

    def settings(self, fake: VonageFake) -> VonageSettings:
        return settings_for(fake)

    def prism_settings(self, fake: VonageFake, url: str) -> VonageSettings:
        # base_url is the host (the adapter adds /sms/json); the spec's server ends in /sms.
        return settings_for(fake, base_url=url.removesuffix(self.prism_base_path))

    def arrange_failure(self, fake: VonageFake, to: str, kind: str) -> None:
        code, text = {"recipient": ("7", "Number barred."), "transient": ("5", "Internal Error")}[
            kind
        ]
        fake.fail(to, 200, code, text)

    def mis_build(self, request: CapturedRequest) -> CapturedRequest:
        form = {k: v for k, v in form_of(request).items() if k != "to"}
        return replace(request, body=urlencode(form).encode())

    def check_answer(self, request: CapturedRequest) -> None:
        # Validated against sms.yml with its answer's oneOf read as the anyOf it means.
        assert request.answer is not None
        response = MockResponse(request.answer, 200, content_type="application/json")
        try:
            _answer_spec().validate_response(as_openapi_request(SPEC, request), response)
        except OpenAPIError as exc:
            raise ContractError(f"answer to {request.path}: {exc} ({exc.__cause__})") from exc

    def test_spec_oneof_refuses_every_answer(self) -> None:
        """The published oneOf is a defect: Vonage's own success example fails it."""
        example = {"message-count": "1", "messages": [{"status": "0", "message-id": "0A00"}]}
        request = CapturedRequest(
            "POST", "/sms/json", {}, "application/x-www-form-urlencoded", b"api_key=abcd1234"
        )
        response = MockResponse(json.dumps(example).encode(), 200, content_type="application/json")
        with pytest.raises(OpenAPIError, match="valid under each of"):
            OpenAPI.from_dict(spec_document(SPEC)).validate_response(
                as_openapi_request(SPEC, request), response
            )

    async def test_unicode_send_matches_the_spec(self, fake: VonageFake, connect: Any) -> None:
        """A non-GSM body goes out with type=unicode, which the spec allows."""
        await connect().send(self.send_request(body="Привет, код 123456"))
        (request,) = self.captured(fake)
        assert form_of(request)["type"] == "unicode"
        self.validate(request)

    def test_json_body_is_refused_by_the_spec(self) -> None:
        """A JSON body where sms.yml wants a form is a contract violation."""
        request = CapturedRequest(
            "POST", "/sms/json", {}, "application/json", b'{"api_key": "abcd1234"}'
        )
        with pytest.raises(ContractError):
            self.validate(request)


fake = serve_fixture(VonageFake)
vonage = adapter_fixture(settings_for)


async def _error_for(
    fake: VonageFake, provider: VonageProvider, code: str, status: int = 200, **kwargs: Any
) -> BaseException:
    fake.fail(OTHER, status, code, **kwargs)
    return await send_error(provider, message(OTHER), ProviderError)


# -- the wire format ------------------------------------------------------------------------


async def test_send_is_a_form_post_with_key_and_secret(
    fake: VonageFake, vonage: VonageProvider
) -> None:
    """A send is one form POST to /sms/json with api_key, api_secret and our id as client-ref."""
    await vonage.send(message())
    (request,) = fake.received
    assert (request.method, request.path) == ("POST", "/sms/json")
    assert request.content_type == "application/x-www-form-urlencoded"
    assert request.fields == {
        "api_key": fake.api_key,
        "api_secret": fake.api_secret,
        "from": SENDER,
        "to": TO.removeprefix("+"),
        "text": "Your code is 123456",
        "client-ref": "m-1",
    }


async def test_gsm_body_keeps_the_default_text_type(
    fake: VonageFake, vonage: VonageProvider
) -> None:
    """A GSM-7 body (extension characters included) is sent without a type field."""
    await vonage.send(message(body="Price: 5€ [promo] {ok}"))
    assert "type" not in fake.received[0].fields


async def test_non_gsm_body_is_sent_as_unicode(fake: VonageFake, vonage: VonageProvider) -> None:
    """A body outside GSM-7 (an emoji) is sent with type=unicode."""
    await vonage.send(message(body="Your code is 123456 🔐"))
    assert fake.received[0].fields["type"] == "unicode"


async def test_multipart_returns_first_id_and_message_count(
    fake: VonageFake, vonage: VonageProvider
) -> None:
    """A 3-part message returns the first part's message-id and segments=3."""
    result = await vonage.send(message(body="x" * 400))
    answer = json.loads(fake.received[0].answer)
    assert answer["message-count"] == "3"
    assert result.provider_message_id == answer["messages"][0]["message-id"]
    assert result.segments == 3


async def test_long_id_is_not_sent_as_client_ref(fake: VonageFake, vonage: VonageProvider) -> None:
    """An id over Vonage's 40-character client-ref limit is left out rather than cut."""
    await vonage.send(message(id="x" * 41))
    assert "client-ref" not in fake.received[0].fields


async def test_request_sender_and_callback_are_sent(fake: VonageFake) -> None:
    """A request's sender replaces the configured one; status_callback goes out as callback."""
    callback = "https://relay.example.com/receipts/vonage"
    await send_with(settings_for(fake, status_callback=callback), message(**{"from": "ACME"}))
    assert fake.received[0].fields["from"] == "ACME"
    assert fake.received[0].fields["callback"] == callback


async def test_base_url_is_overridable(fake: VonageFake) -> None:
    """base_url replaces https://rest.nexmo.com; without it the default is used."""
    provider = VonageProvider("vonage", settings_for(fake))
    default = VonageProvider("vonage", settings_for(fake, base_url=""))
    assert provider.sms_url == f"{fake.url}/sms/json"
    assert default.sms_url == "https://rest.nexmo.com/sms/json"


# -- errors ---------------------------------------------------------------------------------


@pytest.mark.parametrize(("code", "expected"), sorted(ERRORS.items(), key=lambda i: int(i[0])))
async def test_every_status_in_the_table_raises_its_class(
    fake: VonageFake, vonage: VonageProvider, code: str, expected: type[ProviderError]
) -> None:
    """Each status in the docstring's table raises exactly the class the table names."""
    error = await _error_for(fake, vonage, code)
    assert_table_class(error, expected, code)


def test_table_covers_every_status_the_spec_lists() -> None:
    """Every x-errors status in sms.yml has an entry in ERRORS."""
    assert set(spec_document(SPEC)["x-errors"]) == set(ERRORS)


async def test_unknown_status_is_permanent(fake: VonageFake, vonage: VonageProvider) -> None:
    """A status Vonage does not document is a PermanentProviderError with that code."""
    error = await _error_for(fake, vonage, "99")
    assert type(error) is PermanentProviderError
    assert error.code == "99"


async def test_wrong_secret_is_authentication_failed(fake: VonageFake) -> None:
    """The fake's real status 4 for a wrong api_secret raises AuthenticationFailed."""
    error = await send_error_with(
        settings_for(fake, api_secret="not-the-secret"), message(), AuthenticationFailed
    )
    assert error.code == "4"


async def test_throttled_is_rate_limited(fake: VonageFake, vonage: VonageProvider) -> None:
    """Status 1 (throttled) raises RateLimited, which is retryable."""
    error = await _error_for(fake, vonage, "1", message="Throughput Rate Exceeded")
    assert isinstance(error, RateLimited)
    assert error.retryable


@pytest.mark.parametrize("status", [500, 503])
async def test_http_server_error_is_transient(
    fake: VonageFake, vonage: VonageProvider, status: int
) -> None:
    """An HTTP 5xx from Vonage's edge raises TransientProviderError."""
    error = await _error_for(fake, vonage, "", status=status)
    assert type(error) is TransientProviderError


async def test_http_429_carries_retry_after(fake: VonageFake, vonage: VonageProvider) -> None:
    """An HTTP 429 raises RateLimited with Retry-After in seconds."""
    error = await _error_for(fake, vonage, "", status=429, retry_after=3)
    assert isinstance(error, RateLimited)
    assert error.retry_after == 3.0


def test_part_refused_after_accepted_parts_is_permanent(provider: VonageProvider) -> None:
    """A later part throttled after the first was accepted is permanent, not retried."""
    answer = {
        "message-count": "2",
        "messages": [
            {"to": "14155550100", "message-id": "0A01", "status": "0"},
            {"status": "1", "error-text": "Throttled"},
        ],
    }
    with pytest.raises(PermanentProviderError) as caught:
        provider._result(answer)
    assert type(caught.value) is PermanentProviderError
    assert caught.value.code == "1"
    assert "part 2" in str(caught.value)


async def test_error_text_masks_the_number_and_secret(
    fake: VonageFake, vonage: VonageProvider
) -> None:
    """An error-text quoting the number or the secret reaches the exception masked."""
    text = f"Invalid to address {OTHER} for key secret {fake.api_secret}"
    error = await _error_for(fake, vonage, "3", message=text)
    assert OTHER not in str(error) and OTHER.removeprefix("+") not in str(error)
    assert fake.api_secret not in str(error)
    assert OTHER[-2:] in str(error)


def test_settings_repr_hides_the_secrets() -> None:
    """api_secret and signature_secret do not show in the settings' repr."""
    config = VonageSettings(
        api_key="abcd1234", api_secret="s3cret-api", sender=SENDER, signature_secret="s3cret-sig"
    )
    assert "s3cret-api" not in repr(config) and "s3cret-sig" not in repr(config)


def test_settings_need_a_sender() -> None:
    """Vonage requires from: settings without a sender are refused at start-up."""
    with pytest.raises(ValidationError, match="sender"):
        VonageSettings(api_key="abcd1234", api_secret="s")  # type: ignore[call-arg]


# -- receipts -------------------------------------------------------------------------------


@pytest.fixture
def provider() -> VonageProvider:
    config = VonageSettings(
        api_key="abcd1234", api_secret="secret12", sender=SENDER, signature_secret=SIGNATURE_SECRET
    )
    return VonageProvider("vonage", config)


@pytest.mark.parametrize("encoding", ["json", "form", "get"])
def test_signed_receipt_is_accepted_and_parsed(provider: VonageProvider, encoding: str) -> None:
    """A DLR signed with the secret, sent as JSON, form or GET, verifies and parses."""
    params = dlr("0A0000001234567B", **{"client-ref": "m-1"})
    webhook = signed_receipt(params, NOW.timestamp(), encoding=encoding)
    provider.verify_receipt(webhook, NOW)
    (receipt,) = provider.parse_receipts(webhook)
    assert receipt.provider_message_id == "0A0000001234567B"
    assert receipt.message_id == "m-1"
    assert receipt.status is ReceiptStatus.DELIVERED
    assert receipt.error_code is None
    assert receipt.at == datetime(2020, 1, 1, 14, 0, tzinfo=UTC)


def test_tampered_receipt_is_refused(provider: VonageProvider) -> None:
    """Changing a signed parameter (status) after signing breaks the signature."""
    webhook = signed_receipt(dlr("0A01", status="failed"), NOW.timestamp())
    tampered = webhook.body.replace(b'"failed"', b'"delivered"')
    with pytest.raises(BadSignature):
        provider.verify_receipt(replace(webhook, body=tampered), NOW)


def test_receipt_signed_with_another_key_is_refused(provider: VonageProvider) -> None:
    """A DLR signed with a different secret is refused."""
    webhook = signed_receipt(dlr("0A01"), NOW.timestamp(), key="someone-elses-secret")
    with pytest.raises(BadSignature):
        provider.verify_receipt(webhook, NOW)


def test_unsigned_receipt_is_refused(provider: VonageProvider) -> None:
    """A DLR without sig is refused."""
    body = json.dumps({**dlr("0A01"), "timestamp": str(int(NOW.timestamp()))}).encode()
    webhook = Webhook(
        "POST", "https://relay.example.com/r", {"content-type": "application/json"}, body
    )
    with pytest.raises(BadSignature):
        provider.verify_receipt(webhook, NOW)


@pytest.mark.parametrize("skew", [-301, 301])
def test_receipt_outside_the_replay_window_is_stale(provider: VonageProvider, skew: int) -> None:
    """A correctly signed DLR whose timestamp is over 300 s away from now is StaleReceipt."""
    webhook = signed_receipt(dlr("0A01"), NOW.timestamp() + skew)
    with pytest.raises(StaleReceipt):
        provider.verify_receipt(webhook, NOW)


def test_receipt_just_inside_the_window_is_accepted(provider: VonageProvider) -> None:
    """A DLR signed 300 s ago still verifies."""
    provider.verify_receipt(signed_receipt(dlr("0A01"), NOW.timestamp() - 300), NOW)


def test_without_a_signature_secret_every_receipt_is_refused() -> None:
    """With no signature_secret configured, even a well-formed DLR is refused."""
    config = VonageSettings(api_key="abcd1234", api_secret="secret12", sender=SENDER)
    unsigned = VonageProvider("vonage", config)
    with pytest.raises(BadSignature, match="signature_secret"):
        unsigned.verify_receipt(signed_receipt(dlr("0A01"), NOW.timestamp()), NOW)


@pytest.mark.parametrize("method", ["md5hash", "md5", "sha1", "sha256", "sha512"])
def test_each_dashboard_signature_method_verifies(method: str) -> None:
    """Receipts verify with whichever signature method the dashboard is set to."""
    config = VonageSettings(
        api_key="abcd1234",
        api_secret="secret12",
        sender=SENDER,
        signature_secret=SIGNATURE_SECRET,
        signature_method=method,  # type: ignore[arg-type]
    )
    webhook = signed_receipt(dlr("0A01"), NOW.timestamp(), method=method)
    VonageProvider("vonage", config).verify_receipt(webhook, NOW)


def test_signature_matches_vonages_published_vectors() -> None:
    """signature() reproduces digests computed by Vonage's own SDKs (fixtures README)."""
    for vector in json.loads(VECTORS.read_text())["vectors"]:
        computed = signature(vector["params"], vector["secret"], vector["method"])
        assert computed == vector["sig"].lower(), vector["source"]


@pytest.mark.parametrize(
    ("status", "expected"),
    [
        ("delivered", ReceiptStatus.DELIVERED),
        ("expired", ReceiptStatus.UNDELIVERED),
        ("failed", ReceiptStatus.UNDELIVERED),
        ("rejected", ReceiptStatus.FAILED),
        ("accepted", ReceiptStatus.PENDING),
        ("buffered", ReceiptStatus.PENDING),
        ("unknown", ReceiptStatus.PENDING),
    ],
)
def test_receipt_status_is_normalised(
    provider: VonageProvider, status: str, expected: ReceiptStatus
) -> None:
    """Each DLR status maps onto ReceiptStatus; the raw one is kept as provider_status."""
    webhook = signed_receipt(dlr("0A01", status=status), NOW.timestamp())
    (receipt,) = provider.parse_receipts(webhook)
    assert (receipt.status, receipt.provider_status) == (expected, status)


def test_receipt_keeps_the_error_code(provider: VonageProvider) -> None:
    """A failed DLR keeps Vonage's err-code (here 6, anti-spam rejection)."""
    webhook = signed_receipt(dlr("0A01", status="rejected", **{"err-code": "6"}), NOW.timestamp())
    (receipt,) = provider.parse_receipts(webhook)
    assert receipt.error_code == "6"


def test_webhook_without_a_dlr_yields_no_receipt(provider: VonageProvider) -> None:
    """A payload that is not a DLR (no messageId or status) yields no receipts."""
    body = json.dumps({"msisdn": "447700900001", "text": "hi"}).encode()
    webhook = Webhook(
        "POST", "https://relay.example.com/r", {"content-type": "application/json"}, body
    )
    assert provider.parse_receipts(webhook) == []


def test_receipt_reports_its_price(provider: VonageProvider) -> None:
    """The DLR's price (the spec's example, 0.03330000) is the receipt's cost; Vonage
    names no currency (the account's), as in the send answer."""
    webhook = signed_receipt(dlr("0A01"), NOW.timestamp())
    (receipt,) = provider.parse_receipts(webhook)
    assert (receipt.cost, receipt.currency) == (Decimal("0.03330000"), None)


@pytest.mark.parametrize("price", ["", "cheap", "-", "1e-3", "9" * 20])
def test_receipt_with_a_malformed_price_has_no_cost(provider: VonageProvider, price: str) -> None:
    """A price that is not a plain amount is no cost (None); the receipt still parses."""
    webhook = signed_receipt(dlr("0A01", price=price), NOW.timestamp())
    (receipt,) = provider.parse_receipts(webhook)
    assert (receipt.cost, receipt.status) == (None, ReceiptStatus.DELIVERED)
