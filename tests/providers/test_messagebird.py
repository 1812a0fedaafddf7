"""The MessageBird adapter: its contract with the sketch and with MessageBird's documented
examples (fixtures/messagebird), its errors, and its JWT-signed status reports."""

from __future__ import annotations

import json
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl

import jwt
import pytest
from openapi_core.exceptions import OpenAPIError
from openapi_core.testing import MockResponse
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
from smsrelay.models import ReceiptStatus
from smsrelay.providers.base import Webhook
from smsrelay.providers.messagebird import (
    ERRORS,
    RECIPIENT_CODES,
    MessageBirdProvider,
    MessageBirdSettings,
)
from tests.fakes.messagebird import SIGNING_KEY, MessageBirdFake, report, signed_report
from tests.providers.contract import (
    TO,
    CapturedRequest,
    ContractError,
    ProviderContractTest,
    adapter_fixture,
    as_openapi_request,
    message,
    openapi,
    send_error,
    send_error_with,
    send_with,
    serve_fixture,
    validate_answer,
)

SPEC = "messagebird/messagebird-sms-messaging-openapi.yml"
FIXTURES = Path(__file__).parent / "fixtures" / "messagebird"
SENDER = "Acme"
OTHER = "+14155550100"
NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


def fixture(name: str) -> Any:
    text = (FIXTURES / name).read_text()
    return json.loads(text) if name.endswith(".json") else text.strip()


def settings_for(fake: MessageBirdFake, **overrides: Any) -> MessageBirdSettings:
    """Settings that point the adapter at ``fake`` with its access key."""
    values: dict[str, Any] = {
        "base_url": fake.url,
        "access_key": fake.access_key,
        "sender": SENDER,
        "signing_key": SIGNING_KEY,
        **overrides,
    }
    return MessageBirdSettings(**values)


def _without_nulls(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _without_nulls(v) for k, v in value.items() if v is not None}
    if isinstance(value, list):
        return [_without_nulls(v) for v in value]
    return value


class TestMessageBirdContract(ProviderContractTest):
    """MessageBird's create-message call as the third-party sketch states it."""

    provider_type = "messagebird"
    spec = SPEC

    def serve(self) -> MessageBirdFake:
        return MessageBirdFake()

    def settings(self, fake: MessageBirdFake) -> MessageBirdSettings:
        return settings_for(fake)

    def arrange_failure(self, fake: MessageBirdFake, to: str, kind: str) -> None:
        status, code, text = {
            "recipient": (422, "10", "recipient is invalid"),
            "transient": (500, "99", "Internal error"),
        }[kind]
        fake.fail(to, status, code, text)

    def mis_build(self, request: CapturedRequest) -> CapturedRequest:
        body = {k: v for k, v in json.loads(request.body).items() if k != "originator"}
        return replace(request, body=json.dumps(body).encode())

    def check_answer(self, request: CapturedRequest) -> None:
        # The sketch types reference, validity, gateway and scheduledDatetime without
        # null, though MessageBird answers null for them (fixtures README): drop nulls.
        assert request.answer is not None
        answer = json.dumps(_without_nulls(json.loads(request.answer))).encode()
        validate_answer(SPEC, replace(request, answer=answer))

    def test_sketch_refuses_the_documented_answer_with_its_nulls(self) -> None:
        """The sketch's defect, pinned: MessageBird's own 201 example fails it as published."""
        request = CapturedRequest(
            "POST", "/messages", {"Authorization": "AccessKey k"}, "application/json", b"{}"
        )
        body = json.dumps(fixture("create_response.json")).encode()
        response = MockResponse(body, 201, content_type="application/json")
        with pytest.raises(OpenAPIError, match="None is not of type"):
            openapi(SPEC).validate_response(as_openapi_request(SPEC, request), response)

    def test_documented_answer_matches_the_sketch_without_its_nulls(self) -> None:
        """Apart from its nulls, MessageBird's documented 201 example fits the sketch."""
        answer = json.dumps(_without_nulls(fixture("create_response.json"))).encode()
        request = CapturedRequest(
            "POST",
            "/messages",
            {"Authorization": "AccessKey k"},
            "application/json",
            b"{}",
            "",
            201,
            answer,
        )
        validate_answer(SPEC, request)

    def test_documented_request_matches_the_sketch(self) -> None:
        """MessageBird's documented (form-encoded) create example validates against the sketch."""
        request = CapturedRequest(
            "POST",
            "/messages",
            {"Authorization": "AccessKey test_gshuPaZoeEG6ovbc8M79w0QyM"},
            "application/x-www-form-urlencoded",
            fixture("create_request.form").encode(),
        )
        self.validate(request)

    def test_missing_access_key_is_refused_by_the_spec(self) -> None:
        """A request without the AccessKey header breaks the sketch's security rule."""
        request = CapturedRequest(
            "POST",
            "/messages",
            {},
            "application/json",
            json.dumps({"recipients": ["1"], "originator": "a", "body": "b"}).encode(),
        )
        with pytest.raises(ContractError):
            self.validate(request)


fake = serve_fixture(MessageBirdFake)
messagebird = adapter_fixture(settings_for)


async def _error_for(
    fake: MessageBirdFake, provider: MessageBirdProvider, status: int, code: str, **kwargs: Any
) -> ProviderError:
    fake.fail(OTHER, status, code, **kwargs)
    return await send_error(provider, message(OTHER), ProviderError)


# -- the wire format, against MessageBird's documented examples ------------------------------


async def test_send_is_a_json_post_with_access_key(
    fake: MessageBirdFake, messagebird: MessageBirdProvider
) -> None:
    """A send is one JSON POST to /messages with Authorization: AccessKey and our reference."""
    await messagebird.send(message())
    (request,) = fake.received
    assert (request.method, request.path) == ("POST", "/messages")
    assert request.content_type == "application/json"
    assert request.headers["Authorization"] == f"AccessKey {fake.access_key}"
    assert request.fields == {
        "recipients": [TO.removeprefix("+")],
        "originator": SENDER,
        "body": "Your code is 123456",
        "reference": "m-1",
        "datacoding": "auto",
    }


async def test_request_carries_the_documented_fields(
    fake: MessageBirdFake, messagebird: MessageBirdProvider
) -> None:
    """Every field of the documented create example is sent, recipients as MSISDN digits."""
    await messagebird.send(message())
    documented = dict(parse_qsl(fixture("create_request.form")))
    sent = fake.received[0].fields
    assert documented.keys() <= sent.keys()
    assert all(r.isdigit() for r in sent["recipients"])
    assert documented["recipients"].isdigit()


async def test_report_url_is_sent_when_configured(fake: MessageBirdFake) -> None:
    """A configured report_url goes out as reportUrl; a request's sender is the originator."""
    url = "https://relay.example.com/receipts/messagebird"
    await send_with(settings_for(fake, report_url=url), message(**{"from": "ACME"}))
    assert fake.received[0].fields["reportUrl"] == url
    assert fake.received[0].fields["originator"] == "ACME"


async def test_documented_answer_gives_the_message_id(
    fake: MessageBirdFake, messagebird: MessageBirdProvider
) -> None:
    """MessageBird's documented 201 yields its id; without messagePartCount, no segments."""
    fake.canned = fixture("create_response.json")
    result = await messagebird.send(message())
    assert result.provider_message_id == "e8077d803532c0b5937c639b60216938"
    assert result.segments is None


async def test_multipart_answer_gives_the_part_count(
    fake: MessageBirdFake, messagebird: MessageBirdProvider
) -> None:
    """A 2-part body returns the recipient's messagePartCount as segments."""
    result = await messagebird.send(message(body="x" * 200))
    assert result.segments == 2


def test_base_url_is_overridable() -> None:
    """base_url replaces https://rest.messagebird.com."""
    config = MessageBirdSettings(access_key="k", sender=SENDER)
    assert MessageBirdProvider("m", config).messages_url == "https://rest.messagebird.com/messages"
    moved = config.model_copy(update={"base_url": "http://127.0.0.1:9"})
    assert MessageBirdProvider("m", moved).messages_url == "http://127.0.0.1:9/messages"


# -- errors ---------------------------------------------------------------------------------


@pytest.mark.parametrize(("code", "expected"), sorted(ERRORS.items(), key=lambda i: int(i[0])))
async def test_every_code_in_the_table_raises_its_class(
    fake: MessageBirdFake,
    messagebird: MessageBirdProvider,
    code: str,
    expected: type[ProviderError],
) -> None:
    """Each code in the docstring's table raises its class; 9 and 10 about recipients reject it."""
    error = await _error_for(fake, messagebird, 422, code, message="refused")
    # The fake names "recipients" as the failing parameter.
    assert type(error) is (RecipientRejected if code in RECIPIENT_CODES else expected)
    assert error.code == code


async def test_documented_access_key_error_is_authentication_failed(
    fake: MessageBirdFake,
) -> None:
    """The fake's real 401 (the documented code 2 answer) raises AuthenticationFailed."""
    error = await send_error_with(
        settings_for(fake, access_key="wrong"), message(), AuthenticationFailed
    )
    documented = fixture("error_response.json")["errors"][0]
    assert error.code == str(documented["code"])
    assert documented["description"] in str(error)


def test_missing_params_other_than_recipients_are_permanent() -> None:
    """Code 9 about originator (not recipients) is a plain PermanentProviderError."""
    provider = MessageBirdProvider("m", MessageBirdSettings(access_key="k", sender=SENDER))
    body = json.dumps({"errors": [{"code": 9, "description": "x", "parameter": "originator"}]})
    with pytest.raises(PermanentProviderError) as caught:
        provider._raise_error(422, {}, body.encode())
    assert type(caught.value) is PermanentProviderError


def test_authentication_error_wins_among_several() -> None:
    """When code 2 is listed after others, AuthenticationFailed is raised."""
    provider = MessageBirdProvider("m", MessageBirdSettings(access_key="k", sender=SENDER))
    errors = [
        {"code": 9, "description": "no (correct) recipients found", "parameter": "recipients"},
        {"code": 2, "description": "Request not allowed (incorrect access_key)"},
    ]
    with pytest.raises(AuthenticationFailed):
        provider._raise_error(401, {}, json.dumps({"errors": errors}).encode())


async def test_not_enough_balance_is_permanent(
    fake: MessageBirdFake, messagebird: MessageBirdProvider
) -> None:
    """Code 25 (not enough balance) is permanent, not retried."""
    error = await _error_for(fake, messagebird, 422, "25", message="Not enough balance")
    assert type(error) is PermanentProviderError
    assert not error.retryable


async def test_unknown_code_on_429_is_rate_limited(
    fake: MessageBirdFake, messagebird: MessageBirdProvider
) -> None:
    """An undocumented code on HTTP 429 raises RateLimited with Retry-After."""
    error = await _error_for(fake, messagebird, 429, "42", retry_after=5)
    assert isinstance(error, RateLimited)
    assert error.retry_after == 5.0


async def test_internal_error_is_transient(
    fake: MessageBirdFake, messagebird: MessageBirdProvider
) -> None:
    """Code 99 on a 500 raises TransientProviderError."""
    error = await _error_for(fake, messagebird, 500, "99")
    assert type(error) is TransientProviderError


async def test_error_text_masks_number_and_key(
    fake: MessageBirdFake, messagebird: MessageBirdProvider
) -> None:
    """A description quoting the number or the access key reaches the exception masked."""
    text = f"recipient {OTHER.removeprefix('+')} refused for {fake.access_key}"
    error = await _error_for(fake, messagebird, 422, "10", message=text)
    assert OTHER.removeprefix("+") not in str(error)
    assert fake.access_key not in str(error)


def test_settings_repr_hides_the_keys() -> None:
    """access_key and signing_key do not show in the settings' repr."""
    config = MessageBirdSettings(access_key="s3cret-key", sender=SENDER, signing_key="s3cret-sig")
    assert "s3cret-key" not in repr(config) and "s3cret-sig" not in repr(config)


def test_settings_refuse_an_overlong_originator() -> None:
    """An originator over 17 characters is refused at start-up."""
    with pytest.raises(ValidationError, match="sender"):
        MessageBirdSettings(access_key="k", sender="x" * 18)


# -- receipts -------------------------------------------------------------------------------


@pytest.fixture
def provider() -> MessageBirdProvider:
    config = MessageBirdSettings(access_key="k", sender=SENDER, signing_key=SIGNING_KEY)
    return MessageBirdProvider("messagebird", config)


def test_signed_report_is_accepted_and_parsed(provider: MessageBirdProvider) -> None:
    """A report signed with the signing key verifies and parses, our id from reference."""
    webhook = signed_report(report("mb-1", messagePartCount="2"), NOW.timestamp())
    provider.verify_receipt(webhook, NOW)
    (receipt,) = provider.parse_receipts(webhook)
    assert (receipt.provider_message_id, receipt.message_id) == ("mb-1", "m-1")
    assert receipt.status is ReceiptStatus.DELIVERED
    assert receipt.parts == 2
    assert receipt.at == NOW


def test_report_with_a_signed_body_is_accepted(provider: MessageBirdProvider) -> None:
    """A report with a body verifies when payload_hash matches it."""
    webhook = signed_report(report("mb-1"), NOW.timestamp(), body=b'{"status":"delivered"}')
    provider.verify_receipt(webhook, NOW)


def test_tampered_query_is_refused(provider: MessageBirdProvider) -> None:
    """Changing the status in the URL after signing breaks url_hash."""
    webhook = signed_report(report("mb-1", status="delivery_failed"), NOW.timestamp())
    tampered = webhook.url.replace("delivery_failed", "delivered")
    with pytest.raises(BadSignature, match="url_hash"):
        provider.verify_receipt(replace(webhook, url=tampered), NOW)


def test_tampered_body_is_refused(provider: MessageBirdProvider) -> None:
    """Changing a signed body breaks payload_hash."""
    webhook = signed_report(report("mb-1"), NOW.timestamp(), body=b'{"status":"failed"}')
    with pytest.raises(BadSignature, match="payload_hash"):
        provider.verify_receipt(replace(webhook, body=b'{"status":"delivered"}'), NOW)


def test_body_added_to_an_unsigned_payload_is_refused(provider: MessageBirdProvider) -> None:
    """A body on a report whose token has no payload_hash is refused."""
    webhook = signed_report(report("mb-1"), NOW.timestamp())
    with pytest.raises(BadSignature, match="payload_hash"):
        provider.verify_receipt(replace(webhook, body=b"{}"), NOW)


def test_report_signed_with_another_key_is_refused(provider: MessageBirdProvider) -> None:
    """A token signed with a different key is refused."""
    webhook = signed_report(
        report("mb-1"), NOW.timestamp(), key="someone-elses-signing-key-0123456789"
    )
    with pytest.raises(BadSignature):
        provider.verify_receipt(webhook, NOW)


def test_report_without_the_header_is_refused(provider: MessageBirdProvider) -> None:
    """A report without MessageBird-Signature-JWT is refused."""
    webhook = signed_report(report("mb-1"), NOW.timestamp())
    with pytest.raises(BadSignature):
        provider.verify_receipt(replace(webhook, headers={}), NOW)


def test_unsigned_token_is_refused(provider: MessageBirdProvider) -> None:
    """A token with alg none (no signature at all) is refused."""
    webhook = signed_report(report("mb-1"), NOW.timestamp())
    claims = jwt.decode(
        webhook.headers["messagebird-signature-jwt"], options={"verify_signature": False}
    )
    unsigned = jwt.encode(claims, None, algorithm="none")
    with pytest.raises(BadSignature):
        provider.verify_receipt(
            replace(webhook, headers={"messagebird-signature-jwt": unsigned}), NOW
        )


@pytest.mark.parametrize("issued", [-120.0, 60.0])
def test_report_outside_its_validity_is_stale(provider: MessageBirdProvider, issued: float) -> None:
    """A correctly signed token that expired, or is not valid yet, is StaleReceipt."""
    webhook = signed_report(report("mb-1"), NOW.timestamp() + issued)
    with pytest.raises(StaleReceipt):
        provider.verify_receipt(webhook, NOW)


def test_without_a_signing_key_every_report_is_refused() -> None:
    """With no signing_key configured, even a well-signed report is refused."""
    unsigned = MessageBirdProvider("m", MessageBirdSettings(access_key="k", sender=SENDER))
    with pytest.raises(BadSignature, match="signing_key"):
        unsigned.verify_receipt(signed_report(report("mb-1"), NOW.timestamp()), NOW)


@pytest.mark.parametrize(
    "vector", fixture("signature_vectors.json")["vectors"], ids=lambda v: v["name"]
)
def test_messagebird_sdk_vectors(vector: dict[str, Any]) -> None:
    """MessageBird's own webhook-signature test data verifies or is refused as its SDKs do."""
    config = MessageBirdSettings(access_key="k", sender=SENDER, signing_key=vector["secret"])
    webhook = Webhook(
        vector["method"],
        vector["url"],
        {"messagebird-signature-jwt": vector["token"]},
        vector["payload"].encode(),
    )
    now = datetime.fromisoformat(vector["timestamp"])
    verify = MessageBirdProvider("m", config).verify_receipt
    if vector["valid"]:
        verify(webhook, now)
        return
    expected = StaleReceipt if vector["reason"] == "stale" else BadSignature
    with pytest.raises(expected):
        verify(webhook, now)


def test_documented_status_report_parses() -> None:
    """MessageBird's documented report query parses into a delivered receipt."""
    query = dict(parse_qsl(fixture("status_report.query")))
    url = "https://your-own.url/script?" + fixture("status_report.query")
    provider = MessageBirdProvider("m", MessageBirdSettings(access_key="k", sender=SENDER))
    (receipt,) = provider.parse_receipts(Webhook("GET", url, {}, b"", query))
    assert receipt.provider_message_id == "e8077d803532c0b5937c639b60216938"
    assert receipt.message_id == "YouReference123"
    assert receipt.status is ReceiptStatus.DELIVERED
    assert receipt.at == datetime(2016, 5, 3, 8, 58, 10, tzinfo=UTC)


@pytest.mark.parametrize(
    ("status", "expected"),
    [
        ("delivered", ReceiptStatus.DELIVERED),
        ("delivery_failed", ReceiptStatus.UNDELIVERED),
        ("expired", ReceiptStatus.UNDELIVERED),
        ("sent", ReceiptStatus.PENDING),
        ("buffered", ReceiptStatus.PENDING),
    ],
)
def test_report_status_is_normalised(
    provider: MessageBirdProvider, status: str, expected: ReceiptStatus
) -> None:
    """Each report status maps onto ReceiptStatus; the raw one is kept."""
    (receipt,) = provider.parse_receipts(signed_report(report("mb-1", status=status), 0))
    assert (receipt.status, receipt.provider_status) == (expected, status)


def test_failed_report_keeps_the_status_error_code(provider: MessageBirdProvider) -> None:
    """A delivery_failed report keeps statusErrorCode (1: unknown subscriber)."""
    params = report(
        "mb-1", status="delivery_failed", statusReason="unknown subscriber", statusErrorCode="1"
    )
    (receipt,) = provider.parse_receipts(signed_report(params, 0))
    assert receipt.error_code == "1"
