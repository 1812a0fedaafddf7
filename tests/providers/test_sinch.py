"""The Sinch adapter: its contract with Sinch's SMS OpenAPI, its errors, and its signed receipts."""

from __future__ import annotations

import copy
import json
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

import pytest
from openapi_schema_validator import OAS30Validator
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
from smsrelay.providers.sinch import ERRORS, SinchProvider, SinchSettings
from tests.fakes.sinch import RECEIPT_URL, WEBHOOK_SECRET, SinchFake, signed_report
from tests.providers.contract import (
    TO,
    CapturedRequest,
    ContractError,
    ProviderContractTest,
    adapter_fixture,
    assert_refused_connection_is_transient,
    assert_table_class,
    message,
    send_error,
    send_with,
    serve_fixture,
    spec_document,
    with_header,
)

SPEC = "sinch/openapi.yaml"
SENDER = "+14155550199"
OTHER = "+14155550100"
NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
REPORT_SCHEMA = "retrieveRecipientDeliveryResponseObj"


def settings_for(fake: SinchFake, **overrides: Any) -> SinchSettings:
    """Settings that point the adapter at ``fake``, with receipts turned on."""
    values: dict[str, Any] = {
        "base_url": fake.url,
        "service_plan_id": fake.service_plan_id,
        "api_token": fake.api_token,
        "sender": SENDER,
        "callback_url": RECEIPT_URL,
        "webhook_secret": fake.webhook_secret,
        **overrides,
    }
    return SinchSettings(**values)


def report_validator() -> OAS30Validator:
    # The published schema's status enum is ONE string listing all statuses
    # ("Queued, Dispatched, Aborted, …"), so no real report can match it; split it.
    schemas = copy.deepcopy(spec_document(SPEC)["components"]["schemas"])
    status = schemas[REPORT_SCHEMA]["properties"]["status"]
    status["enum"] = [s.strip() for s in status["enum"][0].split(",")]
    return OAS30Validator(schemas[REPORT_SCHEMA])


class TestSinchContract(ProviderContractTest):
    """Sinch's batches API as the Sinch SMS OpenAPI (Ballerina's 2021 copy) states it."""

    provider_type = "sinch"
    spec = SPEC

    def serve(self) -> SinchFake:
        return SinchFake()

    def settings(self, fake: SinchFake) -> SinchSettings:
        return settings_for(fake)

    def arrange_failure(self, fake: SinchFake, to: str, kind: str) -> None:
        status, code = {
            "recipient": (403, "illegal_number_type"),
            "transient": (503, "service_unavailable"),
        }[kind]
        fake.fail(to, status, code, f"Refused {to}")

    def mis_build(self, request: CapturedRequest) -> CapturedRequest:
        batch = {k: v for k, v in json.loads(request.body).items() if k != "to"}
        return replace(request, body=json.dumps(batch).encode())

    def test_spec_report_status_enum_refuses_every_report(self) -> None:
        """The published recipient report schema is a defect: a Delivered report fails it."""
        schema = spec_document(SPEC)["components"]["schemas"][REPORT_SCHEMA]
        report = {"type": "recipient_delivery_report_sms", "batch_id": "B", "recipient": "1"}
        report |= {"code": 0, "status": "Delivered", "at": "2026-03-01T12:00:00Z"}
        assert not OAS30Validator(schema).is_valid(report)
        assert report_validator().is_valid(report)

    async def test_fake_reports_match_the_spec(self, fake: SinchFake, connect: Any) -> None:
        """The fake's delivery reports match the spec's report schema (its enum split)."""
        result = await connect().send(self.send_request())
        for status in ("Delivered", "Dispatched", "Aborted"):
            body = fake.recipient_report(result.provider_message_id, status, code=412)
            errors = list(report_validator().iter_errors(json.loads(body)))
            assert not errors, errors

    def test_batch_without_body_is_refused_by_the_spec(self, fake: SinchFake) -> None:
        """A batch without body breaks the contract, whatever else it carries."""
        request = CapturedRequest(
            "POST",
            f"/xms/v1/{fake.service_plan_id}/batches",
            {"Authorization": "Bearer t"},
            "application/json",
            json.dumps({"to": [TO], "client_reference": "m-1"}).encode(),
        )
        with pytest.raises(ContractError):
            self.validate(request)


fake = serve_fixture(SinchFake)
sinch = adapter_fixture(settings_for)


async def _error_for(
    fake: SinchFake, provider: SinchProvider, status: int, code: str, **kwargs: Any
) -> ProviderError:
    fake.fail(OTHER, status, code, **kwargs)
    return await send_error(provider, message(OTHER), ProviderError)


async def _send_with(fake: SinchFake, **overrides: Any) -> BaseException | None:
    provider = SinchProvider("sinch", settings_for(fake, **overrides))
    try:
        await provider.send(message())
    except ProviderError as exc:
        return exc
    finally:
        await provider.close()
    return None


# -- the wire format ------------------------------------------------------------------------


async def test_send_is_a_json_batch_with_bearer_auth(fake: SinchFake, sinch: SinchProvider) -> None:
    """A send is one JSON batch to the plan's batches URL, our id as client_reference."""
    await sinch.send(message())
    (request,) = fake.received
    assert (request.method, request.path) == ("POST", f"/xms/v1/{fake.service_plan_id}/batches")
    assert request.content_type == "application/json"
    assert request.headers["Authorization"] == f"Bearer {fake.api_token}"
    assert request.fields == {
        "to": [TO],
        "body": "Your code is 123456",
        "client_reference": "m-1",
        "from": SENDER,
        "delivery_report": "per_recipient",
        "callback_url": RECEIPT_URL,
    }


async def test_result_is_the_batch_id(fake: SinchFake, sinch: SinchProvider) -> None:
    """The 201's batch id is the provider message id; Sinch reports no part count."""
    result = await sinch.send(message())
    assert result.provider_message_id == json.loads(fake.received[0].answer)["id"]
    assert result.segments is None


async def test_no_delivery_report_without_callback_url(fake: SinchFake) -> None:
    """Without callback_url the batch asks for no delivery report and names no callback."""
    assert await _send_with(fake, callback_url=None) is None
    assert {"delivery_report", "callback_url"}.isdisjoint(fake.received[0].fields)


async def test_request_sender_overrides_and_no_sender_is_left_to_sinch(fake: SinchFake) -> None:
    """A request's sender wins over the configured one; with none, no from is sent."""
    await send_with(settings_for(fake, sender=None), message(**{"from": "ACME"}), message())
    assert fake.received[0].fields["from"] == "ACME"
    assert "from" not in fake.received[1].fields


@pytest.mark.parametrize("region", ["us", "eu", "au", "br", "ca"])
def test_region_picks_the_host(region: str) -> None:
    """Without base_url the region names the host: https://{region}.sms.api.sinch.com."""
    config = SinchSettings(service_plan_id="plan1", api_token="t", region=region)  # type: ignore[arg-type]
    provider = SinchProvider("sinch", config)
    assert provider.batches_url == f"https://{region}.sms.api.sinch.com/xms/v1/plan1/batches"


def test_base_url_overrides_the_region() -> None:
    """base_url wins over the region's host."""
    config = SinchSettings(
        service_plan_id="plan1", api_token="t", region="eu", base_url="http://127.0.0.1:9/"
    )
    assert SinchProvider("sinch", config).batches_url == "http://127.0.0.1:9/xms/v1/plan1/batches"


# -- errors ---------------------------------------------------------------------------------


@pytest.mark.parametrize(("code", "expected"), sorted(ERRORS.items()))
async def test_every_code_in_the_table_raises_its_class(
    fake: SinchFake, sinch: SinchProvider, code: str, expected: type[ProviderError]
) -> None:
    """Each code in the docstring's table raises exactly the class the table names."""
    error = await _error_for(fake, sinch, 403, code, message="The parameter 'from' is refused")
    assert_table_class(error, expected, code)


async def test_malformed_to_is_recipient_rejected_and_masked(
    fake: SinchFake, sinch: SinchProvider
) -> None:
    """syntax_invalid_parameter_format about to[0] is RecipientRejected, the number masked."""
    text = f"The format of parameter 'to[0]' is invalid; value '{OTHER}' is not a valid MSISDN."
    error = await _error_for(fake, sinch, 400, "syntax_invalid_parameter_format", message=text)
    assert type(error) is RecipientRejected
    assert OTHER not in str(error) and OTHER[-2:] in str(error)


async def test_unknown_code_on_403_is_permanent(fake: SinchFake, sinch: SinchProvider) -> None:
    """A 403 code Sinch has not documented is permanent, not an authentication failure."""
    error = await _error_for(fake, sinch, 403, "some_new_rule")
    assert type(error) is PermanentProviderError


async def test_wrong_token_is_authentication_failed(fake: SinchFake) -> None:
    """The fake's real 401 for a wrong token raises AuthenticationFailed."""
    error = await _send_with(fake, api_token="not-the-token")
    assert isinstance(error, AuthenticationFailed)
    assert "not-the-token" not in str(error)


async def test_unknown_service_plan_is_authentication_failed(fake: SinchFake) -> None:
    """A service plan the token does not own is refused with 401: AuthenticationFailed."""
    assert isinstance(await _send_with(fake, service_plan_id="otherplan"), AuthenticationFailed)


async def test_rate_limit_carries_retry_after(fake: SinchFake, sinch: SinchProvider) -> None:
    """An HTTP 429 raises RateLimited carrying Retry-After in seconds."""
    error = await _error_for(fake, sinch, 429, "too_many_requests", retry_after=4)
    assert isinstance(error, RateLimited)
    assert error.retry_after == 4.0


async def test_server_error_is_transient(fake: SinchFake, sinch: SinchProvider) -> None:
    """A 500 raises TransientProviderError (not RateLimited)."""
    error = await _error_for(fake, sinch, 500, "internal_error")
    assert type(error) is TransientProviderError


async def test_refused_connection_is_transient() -> None:
    """A refused connection raises TransientProviderError with code "network"."""
    async with SinchFake() as gone:
        config = settings_for(gone)
    await assert_refused_connection_is_transient(config)


async def test_token_never_appears_in_error_text(fake: SinchFake, sinch: SinchProvider) -> None:
    """An answer echoing the API token does not put it into the exception's str."""
    error = await _error_for(fake, sinch, 400, "syntax_invalid_json", message=fake.api_token)
    assert fake.api_token not in str(error)


def test_settings_repr_hides_the_secrets() -> None:
    """api_token and webhook_secret do not show in the settings' repr."""
    config = SinchSettings(
        service_plan_id="p", api_token="s3cret-token", webhook_secret="s3cret-wh"
    )
    assert "s3cret-token" not in repr(config) and "s3cret-wh" not in repr(config)


@pytest.mark.parametrize(
    ("field", "value"), [("region", "mars"), ("service_plan_id", "a/b"), ("receipt_window", 0)]
)
def test_settings_refuse_bad_values(field: str, value: object) -> None:
    """An unknown region, a plan id that is not URL-safe or a zero window fail at start-up."""
    with pytest.raises(ValidationError, match=field):
        SinchSettings(**{"service_plan_id": "p", "api_token": "t", field: value})


# -- receipts -------------------------------------------------------------------------------


@pytest.fixture
def provider() -> SinchProvider:
    config = SinchSettings(service_plan_id="plan1", api_token="t", webhook_secret=WEBHOOK_SECRET)
    return SinchProvider("sinch", config)


def _report(**fields: Any) -> bytes:
    report = {
        "type": "recipient_delivery_report_sms",
        "batch_id": "01FC66621XXXXX119Z8PMV1QPQ",
        "recipient": "+44231235674",
        "code": 0,
        "status": "Delivered",
        "at": "2026-03-01T12:00:00.250Z",
        "client_reference": "m-1",
        "number_of_message_parts": 2,
        **fields,
    }
    return json.dumps(report).encode()


async def test_signed_report_of_a_sent_batch_is_accepted_and_parsed(
    fake: SinchFake, sinch: SinchProvider
) -> None:
    """The fake's signed report for a batch it created verifies and parses to our id."""
    result = await sinch.send(message())
    webhook = fake.signed(fake.recipient_report(result.provider_message_id, parts=2))
    sinch.verify_receipt(webhook, datetime.now(UTC))
    (receipt,) = sinch.parse_receipts(webhook)
    assert receipt.provider_message_id == result.provider_message_id
    assert receipt.message_id == "m-1"
    assert receipt.status is ReceiptStatus.DELIVERED
    assert (receipt.parts, receipt.error_code) == (2, None)
    assert receipt.at == datetime(2026, 3, 1, 12, 0, 0, 250000, tzinfo=UTC)


@pytest.mark.parametrize(
    ("status", "code", "expected", "error_code"),
    [
        ("Queued", 400, ReceiptStatus.PENDING, None),
        ("Dispatched", 401, ReceiptStatus.PENDING, None),
        ("Unknown", 0, ReceiptStatus.PENDING, None),
        ("Failed", 61, ReceiptStatus.UNDELIVERED, "61"),
        ("Expired", 406, ReceiptStatus.UNDELIVERED, "406"),
        ("Deleted", 0, ReceiptStatus.UNDELIVERED, "0"),
        ("Aborted", 412, ReceiptStatus.FAILED, "412"),
        ("Rejected", 408, ReceiptStatus.FAILED, "408"),
        ("Teleported", 999, ReceiptStatus.PENDING, None),
    ],
)
def test_report_statuses_normalise(
    provider: SinchProvider, status: str, code: int, expected: ReceiptStatus, error_code: str | None
) -> None:
    """Each Sinch status maps to its receipt status; failures keep Sinch's code."""
    webhook = signed_report(_report(status=status, code=code), WEBHOOK_SECRET, NOW.timestamp())
    (receipt,) = provider.parse_receipts(webhook)
    assert (receipt.status, receipt.provider_status, receipt.error_code) == (
        expected,
        status,
        error_code,
    )


def test_summary_report_is_read_per_status(provider: SinchProvider) -> None:
    """A batch-level delivery_report_sms gives one receipt per listed status."""
    summary = {
        "type": "delivery_report_sms",
        "batch_id": "B1",
        "client_reference": "m-1",
        "statuses": [{"code": 402, "status": "Aborted", "count": 1}],
    }
    webhook = Webhook("POST", RECEIPT_URL, {}, json.dumps(summary).encode())
    (receipt,) = provider.parse_receipts(webhook)
    assert (receipt.provider_message_id, receipt.message_id) == ("B1", "m-1")
    assert (receipt.status, receipt.error_code) == (ReceiptStatus.FAILED, "402")


def test_inbound_message_is_no_receipt(provider: SinchProvider) -> None:
    """An inbound mo_text callback yields no receipts."""
    inbound = {"type": "mo_text", "id": "01X", "from": "16051234567", "to": "13185551234"}
    assert (
        provider.parse_receipts(Webhook("POST", RECEIPT_URL, {}, json.dumps(inbound).encode()))
        == []
    )


def test_sinch_published_signature_vector_verifies() -> None:
    """The signed callback in Sinch's .NET SDK tests (sinch/sinch-sdk-dotnet) verifies here."""
    body = (
        b'{"app_id":"","accepted_time":"2021-10-18T17:49:13.813615Z",'
        b'"project_id":"e2df3a34-a71b-4448-9db5-a8d2baad28e4",'
        b'"contact_create_notification":{"contact":{"id":"01FJA8B466Y0R2GNXD78MD9SM1",'
        b'"channel_identities":[{"channel":"SMS","identity":"48123456789","app_id":""}],'
        b'"display_name":"New Test Contact","email":"new.contact@email.com",'
        b'"external_id":"","metadata":"","language":"EN_US"}},"message_metadata":""}'
    )
    headers = {
        "x-sinch-webhook-signature": "6bpJoRmFoXVjfJIVglMoJzYXxnoxRujzR4k2GOXewOE=",
        "x-sinch-webhook-signature-timestamp": "1634579353",
        "x-sinch-webhook-signature-nonce": "01FJA8B4A7BM43YGWSG9GBV067",
        "x-sinch-webhook-signature-algorithm": "HmacSHA256",
    }
    config = SinchSettings(service_plan_id="p", api_token="t", webhook_secret="foo_secret1234")
    SinchProvider("sinch", config).verify_receipt(
        Webhook("POST", RECEIPT_URL, headers, body), datetime.fromtimestamp(1634579353, UTC)
    )


def test_tampered_report_is_refused(provider: SinchProvider) -> None:
    """Changing the body after signing (Failed → Delivered) breaks the signature."""
    webhook = signed_report(_report(status="Failed"), WEBHOOK_SECRET, NOW.timestamp())
    tampered = webhook.body.replace(b'"Failed"', b'"Delivered"')
    with pytest.raises(BadSignature):
        provider.verify_receipt(replace(webhook, body=tampered), NOW)


def test_report_signed_with_another_secret_is_refused(provider: SinchProvider) -> None:
    """A report signed with a different webhook secret is refused."""
    webhook = signed_report(_report(), "someone-elses-secret", NOW.timestamp())
    with pytest.raises(BadSignature):
        provider.verify_receipt(webhook, NOW)


@pytest.mark.parametrize("header", ["", "-timestamp", "-nonce", "-algorithm"])
def test_report_missing_a_signature_header_is_refused(provider: SinchProvider, header: str) -> None:
    """Each of the four x-sinch-webhook-signature headers is required."""
    webhook = signed_report(_report(), WEBHOOK_SECRET, NOW.timestamp())
    name = f"x-sinch-webhook-signature{header}"
    changed = with_header(webhook, name, None)
    with pytest.raises(BadSignature):
        provider.verify_receipt(changed, NOW)


def test_report_with_another_algorithm_is_refused(provider: SinchProvider) -> None:
    """Only HmacSHA256 is accepted, so the algorithm header cannot downgrade the check."""
    webhook = signed_report(_report(), WEBHOOK_SECRET, NOW.timestamp())
    changed = with_header(webhook, "x-sinch-webhook-signature-algorithm", "HmacMD5")
    with pytest.raises(BadSignature):
        provider.verify_receipt(changed, NOW)


@pytest.mark.parametrize("skew", [-301, 301])
def test_report_outside_the_replay_window_is_stale(provider: SinchProvider, skew: int) -> None:
    """A correctly signed report whose timestamp is over 300 s from now is StaleReceipt."""
    webhook = signed_report(_report(), WEBHOOK_SECRET, NOW.timestamp() + skew)
    with pytest.raises(StaleReceipt):
        provider.verify_receipt(webhook, NOW)


def test_report_just_inside_the_window_is_accepted(provider: SinchProvider) -> None:
    """A report signed 300 s ago still verifies."""
    provider.verify_receipt(signed_report(_report(), WEBHOOK_SECRET, NOW.timestamp() - 300), NOW)


def test_receipts_are_refused_without_a_webhook_secret() -> None:
    """Without webhook_secret every report is refused, signed or not."""
    unconfigured = SinchProvider("sinch", SinchSettings(service_plan_id="p", api_token="t"))
    webhook = signed_report(_report(), WEBHOOK_SECRET, NOW.timestamp())
    with pytest.raises(BadSignature):
        unconfigured.verify_receipt(webhook, NOW)


def test_unreadable_report_is_an_error(provider: SinchProvider) -> None:
    """An authentic callback that is not a JSON object raises ValueError (the API: 400)."""
    with pytest.raises(ValueError):
        provider.parse_receipts(Webhook("POST", RECEIPT_URL, {}, b"[1, 2]"))


def test_replay_key_is_what_the_hmac_covers(provider: SinchProvider) -> None:
    """The key holds the body, nonce and timestamp; an unsigned header does not change it."""
    webhook = signed_report(_report(), WEBHOOK_SECRET, NOW.timestamp())
    extra = replace(webhook, headers={**webhook.headers, "x-other": "1"})
    assert provider.replay_key(extra) == provider.replay_key(webhook)
    later = signed_report(_report(), WEBHOOK_SECRET, NOW.timestamp() + 1)
    assert provider.replay_key(later) != provider.replay_key(webhook)
