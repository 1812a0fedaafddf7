"""The Telnyx adapter: its contract with Telnyx's OpenAPI, its errors, and its Ed25519 receipts.

Telnyx's spec3.yml (4 MB) is loaded once per process with libyaml and patched before
openapi-core reads it: openapi-core refuses the published file, because 64 schemas
declare ``default: null`` on a type that does not allow null, and two operations share
the operationId ``ListPhoneNumbers``. And the document's global ``bearerAuth`` applies to
its webhooks too, so every genuine ``deliveryUpdate`` (signed, never bearer) would fail.
``patch_spec`` drops those defaults, renames the second operation and gives that webhook
``security: []``; nothing on ``POST /messages`` changes. The patched document passes
openapi-spec-validator (a test checks it), so the validator skips that 5 s check after.
Prism serves the published file as it is.
"""

from __future__ import annotations

import copy
import functools
import json
from dataclasses import replace
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import pytest
import yaml
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from openapi_core import Config, OpenAPI
from openapi_core.exceptions import OpenAPIError
from openapi_core.testing import MockRequest, MockResponse
from openapi_spec_validator import OpenAPIV31SpecValidator
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
from smsrelay.providers.telnyx import ERRORS, TelnyxProvider, TelnyxSettings
from tests.fakes.telnyx import RECEIPT_URL, TelnyxFake, public_key_of, signed_event
from tests.providers.contract import (
    TO,
    CapturedRequest,
    ContractError,
    ProviderContractTest,
    WebhookCall,
    adapter_fixture,
    assert_refused_connection_is_transient,
    assert_table_class,
    message,
    send_error,
    send_error_with,
    serve_fixture,
    spec_path,
    with_header,
)

SPEC = "telnyx/spec3.yml"
SERVER = "https://api.telnyx.com"
SENDER = "+14155550199"
PROFILE = "4000eba1-a0c0-4563-9925-b25e842a7cb6"
OTHER = "+14155550100"
NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
KEY = Ed25519PrivateKey.generate()


@functools.cache
def published_spec() -> dict[str, Any]:
    """spec3.yml as published (libyaml: 3 s where the pure-Python loader takes 10)."""
    with spec_path(SPEC).open(encoding="utf-8") as file:
        document: dict[str, Any] = yaml.load(file, Loader=yaml.CSafeLoader)
    return document


def patch_spec(document: dict[str, Any]) -> list[str]:
    """Fix, in place, what makes openapi-core refuse spec3.yml; returns what changed."""
    changes = [f"default: null dropped at {where}" for where in _drop_null_defaults(document)]
    operation = document["paths"]["/v2/whatsapp/phone_numbers"]["get"]
    if operation.get("operationId") == "ListPhoneNumbers":  # also GET /phone_numbers's id
        operation["operationId"] = "ListWhatsappPhoneNumbers"
        changes.append("operationId of GET /v2/whatsapp/phone_numbers renamed")
    webhook = document["webhooks"]["deliveryUpdate"]["post"]
    if "security" not in webhook:  # the global bearerAuth would apply to Telnyx's own calls
        webhook["security"] = []
        changes.append("security: [] on the deliveryUpdate webhook")
    return changes


def _drop_null_defaults(node: Any, where: str = "#") -> list[str]:
    dropped: list[str] = []
    if isinstance(node, dict):
        kind = node.get("type")
        nullable = kind == "null" or (isinstance(kind, list) and "null" in kind)
        if "default" in node and node["default"] is None and kind and not nullable:
            del node["default"]
            dropped.append(where)
        for key, value in node.items():
            dropped += _drop_null_defaults(value, f"{where}/{key}")
    elif isinstance(node, list):
        for index, value in enumerate(node):
            dropped += _drop_null_defaults(value, f"{where}/{index}")
    return dropped


@functools.cache
def patched_spec() -> dict[str, Any]:
    document = copy.deepcopy(published_spec())
    patch_spec(document)
    return document


@functools.cache
def telnyx_openapi() -> OpenAPI:
    """openapi-core over the patched spec (its validity is checked once, by a test)."""
    return OpenAPI.from_dict(patched_spec(), config=Config(spec_validator_cls=None))


def as_request(request: CapturedRequest) -> MockRequest:
    return MockRequest(
        SERVER,
        request.method,
        request.path,
        headers=dict(request.headers),
        data=request.body,
        content_type=request.content_type.lower(),
    )


def settings_for(fake: TelnyxFake, **overrides: Any) -> TelnyxSettings:
    """Settings that point the adapter at ``fake``, with receipts turned on."""
    values: dict[str, Any] = {
        "base_url": fake.api_url,
        "api_key": fake.api_key,
        "sender": SENDER,
        "webhook_url": RECEIPT_URL,
        "public_key": fake.public_key,
        **overrides,
    }
    return TelnyxSettings(**values)


class TestTelnyxContract(ProviderContractTest):
    """Telnyx's Messaging API as spec3.yml (patched, see the module docstring) states it."""

    provider_type = "telnyx"
    spec = SPEC
    prism_base_path = "/v2"

    def serve(self) -> TelnyxFake:
        return TelnyxFake()

    def settings(self, fake: TelnyxFake) -> TelnyxSettings:
        return settings_for(fake)

    def arrange_failure(self, fake: TelnyxFake, to: str, kind: str) -> None:
        status, code, title = {
            "recipient": (403, "40300", "Blocked due to STOP message"),
            "transient": (500, "10007", "Unexpected error"),
        }[kind]
        fake.fail(to, status, code, f"{title}: {to}")

    def mis_build(self, request: CapturedRequest) -> CapturedRequest:
        body = {k: v for k, v in json.loads(request.body).items() if k != "to"}
        return replace(request, body=json.dumps(body).encode())

    def validate(self, request: CapturedRequest) -> None:
        try:
            telnyx_openapi().validate_request(as_request(request))
        except OpenAPIError as exc:
            raise ContractError(f"{request.path}: {exc} ({exc.__cause__})") from exc
        self.check_extensions(request)

    def check_extensions(self, request: CapturedRequest) -> None:
        # Stated in the descriptions of CreateMessageRequest, not in its schema.
        body = json.loads(request.body)
        if not (body.get("from") or body.get("messaging_profile_id")):
            raise ContractError("one of from and messaging_profile_id is required")
        if not body.get("text"):
            raise ContractError("text is required for SMS")

    def check_answer(self, request: CapturedRequest) -> None:
        assert request.answer is not None and request.status is not None
        response = MockResponse(request.answer, request.status, content_type="application/json")
        try:
            telnyx_openapi().validate_response(as_request(request), response)
        except OpenAPIError as exc:
            raise ContractError(f"answer to {request.path}: {exc} ({exc.__cause__})") from exc

    def test_spec_needs_exactly_the_documented_patches(self) -> None:
        """64 null defaults on non-null types, a duplicate id, bearer auth on a webhook."""
        changes = patch_spec(copy.deepcopy(published_spec()))
        assert len([c for c in changes if c.startswith("default: null")]) == 64
        assert changes[-2:] == [
            "operationId of GET /v2/whatsapp/phone_numbers renamed",
            "security: [] on the deliveryUpdate webhook",
        ]
        assert not any("/paths/~1messages" in c or "/paths//messages" in c for c in changes)

    def test_patched_spec_is_a_valid_openapi_document(self) -> None:
        """After the patch, openapi-spec-validator finds nothing wrong with spec3.yml."""
        assert list(OpenAPIV31SpecValidator(patched_spec()).iter_errors()) == []

    async def test_messaging_profile_send_matches_the_spec(self, fake: TelnyxFake) -> None:
        """A send from a messaging profile's pool, without from, validates too."""
        config = settings_for(fake, sender=None, messaging_profile_id=PROFILE)
        provider = TelnyxProvider("telnyx", config)
        try:
            await provider.send(message())
        finally:
            await provider.close()
        self.validate(self.captured(fake)[0])

    def test_send_without_sender_breaks_the_contract(self) -> None:
        """A message with neither from nor messaging_profile_id is caught by the extension."""
        request = CapturedRequest(
            "POST",
            "/v2/messages",
            {"Authorization": "Bearer k"},
            "application/json",
            json.dumps({"to": TO, "text": "hi"}).encode(),
        )
        with pytest.raises(ContractError, match="messaging_profile_id"):
            self.validate(request)

    @pytest.mark.parametrize(
        ("status", "event_type"), [("sent", "message.sent"), ("delivered", "message.finalized")]
    )
    async def test_fake_events_match_the_spec(
        self, fake: TelnyxFake, connect: Any, status: str, event_type: str
    ) -> None:
        """The fake's signed events match the spec's deliveryUpdate webhook, headers included."""
        result = await connect().send(self.send_request())
        webhook = fake.signed(fake.event(result.provider_message_id, status, event_type))
        call = WebhookCall("deliveryUpdate", webhook.body, dict(webhook.headers))
        try:
            telnyx_openapi().validate_request(call)
        except OpenAPIError as exc:
            raise ContractError(f"event: {exc} ({exc.__cause__})") from exc


fake = serve_fixture(TelnyxFake)
telnyx = adapter_fixture(settings_for)


async def _error_for(
    fake: TelnyxFake, provider: TelnyxProvider, status: int, code: str, **kwargs: Any
) -> ProviderError:
    fake.fail(OTHER, status, code, **kwargs)
    return await send_error(provider, message(OTHER), ProviderError)


# -- the wire format ------------------------------------------------------------------------


async def test_send_is_a_json_post_with_bearer_auth(
    fake: TelnyxFake, telnyx: TelnyxProvider
) -> None:
    """A send is one JSON POST to /v2/messages with the API key as Bearer token."""
    await telnyx.send(message())
    (request,) = fake.received
    assert (request.method, request.path) == ("POST", "/v2/messages")
    assert request.content_type == "application/json"
    assert request.headers["Authorization"] == f"Bearer {fake.api_key}"
    assert request.fields == {
        "to": TO,
        "text": "Your code is 123456",
        "from": SENDER,
        "webhook_url": RECEIPT_URL,
    }


async def test_our_id_is_not_sent_for_want_of_a_field(
    fake: TelnyxFake, telnyx: TelnyxProvider
) -> None:
    """Telnyx's request has no client reference field, so our id goes nowhere."""
    await telnyx.send(message(id="our-id-7"))
    assert b"our-id-7" not in fake.received[0].body


async def test_result_carries_id_and_parts(fake: TelnyxFake, telnyx: TelnyxProvider) -> None:
    """data.id is the provider message id and data.parts the segment count."""
    result = await telnyx.send(message(body="x" * 200))
    answer = json.loads(fake.received[0].answer)["data"]
    assert (result.provider_message_id, result.segments) == (answer["id"], 2)


async def test_profile_and_webhook_options_are_sent_when_set(fake: TelnyxFake) -> None:
    """messaging_profile_id, the failover URL and use_profile_webhooks go out when set."""
    failover = "https://backup.example.com/receipts/telnyx"
    config = settings_for(
        fake,
        messaging_profile_id=PROFILE,
        webhook_failover_url=failover,
        use_profile_webhooks=False,
    )
    provider = TelnyxProvider("telnyx", config)
    try:
        await provider.send(message(**{"from": "ACME"}))
    finally:
        await provider.close()
    fields = fake.received[0].fields
    assert (fields["from"], fields["messaging_profile_id"]) == ("ACME", PROFILE)
    assert (fields["webhook_failover_url"], fields["use_profile_webhooks"]) == (failover, False)


def test_base_url_defaults_to_the_v2_server() -> None:
    """Without base_url the adapter posts to https://api.telnyx.com/v2/messages."""
    provider = TelnyxProvider("telnyx", TelnyxSettings(api_key="k", sender=SENDER))
    assert provider.messages_url == "https://api.telnyx.com/v2/messages"


# -- errors ---------------------------------------------------------------------------------


def _status_for(expected: type[ProviderError]) -> int:
    if expected is RateLimited:
        return 429
    if expected is TransientProviderError:
        return 500
    return 401 if expected is AuthenticationFailed else 400


@pytest.mark.parametrize(("code", "expected"), sorted(ERRORS.items()))
async def test_every_code_in_the_table_raises_its_class(
    fake: TelnyxFake, telnyx: TelnyxProvider, code: str, expected: type[ProviderError]
) -> None:
    """Each code in the docstring's table raises exactly the class the table names."""
    error = await _error_for(fake, telnyx, _status_for(expected), code)
    assert_table_class(error, expected, code)


async def test_stop_block_on_403_is_recipient_rejected(
    fake: TelnyxFake, telnyx: TelnyxProvider
) -> None:
    """40300 arrives as HTTP 403 but is about the recipient: RecipientRejected, not auth."""
    error = await _error_for(fake, telnyx, 403, "40300", message="Blocked due to STOP message")
    assert type(error) is RecipientRejected


@pytest.mark.parametrize(
    ("status", "expected"),
    [(401, AuthenticationFailed), (403, AuthenticationFailed), (422, PermanentProviderError)],
)
async def test_unknown_code_falls_back_on_the_status(
    fake: TelnyxFake, telnyx: TelnyxProvider, status: int, expected: type[ProviderError]
) -> None:
    """A code Telnyx has not documented is judged by the HTTP status."""
    error = await _error_for(fake, telnyx, status, "99999")
    assert type(error) is expected


async def test_wrong_api_key_is_authentication_failed(fake: TelnyxFake) -> None:
    """The fake's real 401 / 10009 for a wrong key raises AuthenticationFailed."""
    error = await send_error_with(
        settings_for(fake, api_key="KEYnotTheKey"), message(), AuthenticationFailed
    )
    assert error.code == "10009"
    assert "KEYnotTheKey" not in str(error)


async def test_rate_limit_carries_retry_after(fake: TelnyxFake, telnyx: TelnyxProvider) -> None:
    """10011 with HTTP 429 raises RateLimited carrying Retry-After in seconds."""
    error = await _error_for(fake, telnyx, 429, "10011", retry_after=2)
    assert isinstance(error, RateLimited)
    assert error.retry_after == 2.0


async def test_refused_connection_is_transient() -> None:
    """A refused connection raises TransientProviderError with code "network"."""
    async with TelnyxFake() as gone:
        config = settings_for(gone)
    await assert_refused_connection_is_transient(config)


async def test_error_text_masks_the_number_and_key(
    fake: TelnyxFake, telnyx: TelnyxProvider
) -> None:
    """A title quoting the number or the API key reaches the exception masked."""
    text = f"Invalid 'to' address {OTHER} for {fake.api_key}"
    error = await _error_for(fake, telnyx, 400, "40310", message=text)
    assert OTHER not in str(error) and fake.api_key not in str(error)
    assert OTHER[-2:] in str(error)


def test_settings_need_a_sender_or_profile() -> None:
    """Settings with neither sender nor messaging_profile_id are refused at start-up."""
    with pytest.raises(ValidationError, match="sender or messaging_profile_id"):
        TelnyxSettings(api_key="k")


@pytest.mark.parametrize("key", ["not base64!", "c2hvcnQ="])
def test_settings_refuse_a_malformed_public_key(key: str) -> None:
    """A public_key that is not base64 of 32 bytes is refused at start-up."""
    with pytest.raises(ValidationError, match="public_key"):
        TelnyxSettings(api_key="k", sender=SENDER, public_key=key)


def test_settings_repr_hides_the_api_key() -> None:
    """The API key is a secret: it does not show in the settings' repr."""
    assert "KEYs3cret" not in repr(TelnyxSettings(api_key="KEYs3cret", sender=SENDER))


# -- receipts -------------------------------------------------------------------------------


@pytest.fixture
def provider() -> TelnyxProvider:
    config = TelnyxSettings(api_key="k", sender=SENDER, public_key=public_key_of(KEY))
    return TelnyxProvider("telnyx", config)


def _event(
    status: str = "delivered", event_type: str = "message.finalized", **payload: Any
) -> bytes:
    body = {
        "data": {
            "event_type": event_type,
            "id": "86f58db9-0fe3-4adc-9d1f-46e66e6e9323",
            "occurred_at": "2026-03-01T12:00:00.250+00:00",
            "record_type": "event",
            "payload": {
                "id": "40385f64-5717-4562-b3fc-2c963f66afa6",
                "record_type": "message",
                "direction": "outbound",
                "to": [{"phone_number": TO, "status": status}],
                "parts": 2,
                "errors": [],
                **payload,
            },
        },
        "meta": {"attempt": 1, "delivered_to": RECEIPT_URL},
    }
    return json.dumps(body).encode()


async def test_signed_event_of_a_sent_message_is_accepted_and_parsed(
    fake: TelnyxFake, telnyx: TelnyxProvider
) -> None:
    """The fake's signed message.finalized for a message it queued verifies and parses."""
    result = await telnyx.send(message())
    webhook = fake.signed(fake.event(result.provider_message_id))
    telnyx.verify_receipt(webhook, datetime.now(UTC))
    (receipt,) = telnyx.parse_receipts(webhook)
    assert receipt.provider_message_id == result.provider_message_id
    assert receipt.message_id is None
    assert (receipt.status, receipt.provider_status) == (ReceiptStatus.DELIVERED, "delivered")
    assert (receipt.parts, receipt.error_code) == (1, None)
    assert receipt.at == datetime(2026, 3, 1, 12, 0, 0, 250000, tzinfo=UTC)


@pytest.mark.parametrize(
    ("status", "expected", "error_code"),
    [
        ("queued", ReceiptStatus.PENDING, None),
        ("sending", ReceiptStatus.PENDING, None),
        ("sent", ReceiptStatus.PENDING, None),
        ("delivery_unconfirmed", ReceiptStatus.PENDING, None),
        ("delivered", ReceiptStatus.DELIVERED, None),
        ("delivery_failed", ReceiptStatus.UNDELIVERED, "40008"),
        ("expired", ReceiptStatus.UNDELIVERED, "40008"),
        ("sending_failed", ReceiptStatus.FAILED, "40008"),
    ],
)
def test_event_statuses_normalise(
    provider: TelnyxProvider, status: str, expected: ReceiptStatus, error_code: str | None
) -> None:
    """Each recipient status maps to its receipt status; failures keep errors[0].code."""
    errors = [{"code": "40008", "title": "Undeliverable"}]
    (receipt,) = provider.parse_receipts(signed_event(_event(status, errors=errors), KEY))
    assert (receipt.status, receipt.error_code) == (expected, error_code)


def test_inbound_message_is_no_receipt(provider: TelnyxProvider) -> None:
    """A message.received event (an inbound SMS) yields no receipts."""
    assert provider.parse_receipts(signed_event(_event(event_type="message.received"), KEY)) == []


def test_tampered_event_is_refused(provider: TelnyxProvider) -> None:
    """Changing the body after signing (delivery_failed → delivered) breaks the signature."""
    webhook = signed_event(_event("delivery_failed"), KEY, NOW.timestamp())
    tampered = webhook.body.replace(b'"delivery_failed"', b'"delivered"')
    with pytest.raises(BadSignature):
        provider.verify_receipt(replace(webhook, body=tampered), NOW)


def test_retimed_event_is_refused(provider: TelnyxProvider) -> None:
    """The timestamp is signed too: moving it to now breaks the signature."""
    webhook = signed_event(_event(), KEY, NOW.timestamp() - 3600)
    changed = with_header(webhook, "telnyx-timestamp", str(int(NOW.timestamp())))
    with pytest.raises(BadSignature):
        provider.verify_receipt(changed, NOW)


def test_event_signed_with_another_key_is_refused(provider: TelnyxProvider) -> None:
    """An event signed by another Ed25519 key is refused."""
    webhook = signed_event(_event(), Ed25519PrivateKey.generate(), NOW.timestamp())
    with pytest.raises(BadSignature):
        provider.verify_receipt(webhook, NOW)


@pytest.mark.parametrize("header", ["telnyx-signature-ed25519", "telnyx-timestamp"])
def test_event_missing_a_signature_header_is_refused(provider: TelnyxProvider, header: str) -> None:
    """Both the signature and the timestamp header are required."""
    webhook = signed_event(_event(), KEY, NOW.timestamp())
    changed = with_header(webhook, header, None)
    with pytest.raises(BadSignature):
        provider.verify_receipt(changed, NOW)


def test_signature_that_is_not_base64_is_refused(provider: TelnyxProvider) -> None:
    """A signature header that is not base64 is a BadSignature, not a crash."""
    webhook = signed_event(_event(), KEY, NOW.timestamp())
    changed = with_header(webhook, "telnyx-signature-ed25519", "not base64!")
    with pytest.raises(BadSignature):
        provider.verify_receipt(changed, NOW)


@pytest.mark.parametrize("skew", [-301, 301])
def test_event_outside_the_replay_window_is_stale(provider: TelnyxProvider, skew: int) -> None:
    """A correctly signed event whose timestamp is over 300 s from now is StaleReceipt."""
    webhook = signed_event(_event(), KEY, NOW.timestamp() + skew)
    with pytest.raises(StaleReceipt):
        provider.verify_receipt(webhook, NOW)


def test_event_just_inside_the_window_is_accepted(provider: TelnyxProvider) -> None:
    """An event signed 300 s ago still verifies."""
    provider.verify_receipt(signed_event(_event(), KEY, NOW.timestamp() - 300), NOW)


def test_receipts_are_refused_without_a_public_key() -> None:
    """Without public_key every event is refused, signed or not."""
    unconfigured = TelnyxProvider("telnyx", TelnyxSettings(api_key="k", sender=SENDER))
    with pytest.raises(BadSignature):
        unconfigured.verify_receipt(signed_event(_event(), KEY, NOW.timestamp()), NOW)


def test_unreadable_event_is_an_error(provider: TelnyxProvider) -> None:
    """An authentic webhook that is not a JSON object raises ValueError (the API: 400)."""
    with pytest.raises(ValueError):
        provider.parse_receipts(signed_event(b'"text"', KEY))


def test_replay_key_is_the_signed_payload_not_the_signature_text(
    provider: TelnyxProvider,
) -> None:
    """The key is timestamp|body: the signature's base64 spelling does not count."""
    webhook = signed_event(_event(), KEY, NOW.timestamp())
    respelled = dict(webhook.headers)
    respelled["telnyx-signature-ed25519"] = respelled["telnyx-signature-ed25519"].rstrip("=")
    assert provider.replay_key(replace(webhook, headers=respelled)) == provider.replay_key(webhook)
    assert provider.replay_key(webhook).endswith(b"|" + webhook.body)


def test_finalized_event_reports_the_message_cost(provider: TelnyxProvider) -> None:
    """payload.cost (the spec's example: 0.0051 USD) is the receipt's cost and currency."""
    body = _event(cost={"amount": "0.0051", "currency": "USD"})
    (receipt,) = provider.parse_receipts(signed_event(body, KEY))
    assert (receipt.cost, receipt.currency) == (Decimal("0.0051"), "USD")


@pytest.mark.parametrize(
    "cost", [None, "0.0051", {"amount": "x", "currency": "USD"}, {"amount": 5, "currency": 5}]
)
def test_event_with_a_malformed_cost_has_no_cost(provider: TelnyxProvider, cost: Any) -> None:
    """A null cost (not rated yet) or a malformed one gives no cost; the receipt still parses."""
    (receipt,) = provider.parse_receipts(signed_event(_event(cost=cost), KEY))
    assert receipt.status is ReceiptStatus.DELIVERED
    if isinstance(cost, dict) and cost["amount"] == 5:
        assert (receipt.cost, receipt.currency) == (Decimal(5), None)
    else:
        assert receipt.cost is None
