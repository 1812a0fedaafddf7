"""The Plivo adapter: its contract with the Plivo sketch and with Plivo's documented
examples (fixtures/plivo), its errors, and its V3-signed status callbacks."""

from __future__ import annotations

import base64
import json
from dataclasses import replace
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

import pytest
from pydantic import ValidationError

from smsrelay.errors import (
    AuthenticationFailed,
    BadSignature,
    PermanentProviderError,
    ProviderError,
    RateLimited,
    RecipientRejected,
    TransientProviderError,
)
from smsrelay.models import ReceiptStatus
from smsrelay.providers.base import Webhook
from smsrelay.providers.plivo import PlivoProvider, PlivoSettings, v3_signature, with_reference
from tests.fakes.plivo import AUTH_TOKEN, PlivoFake, callback, signed_callback
from tests.providers.contract import (
    TO,
    CapturedRequest,
    ContractError,
    ProviderContractTest,
    adapter_fixture,
    message,
    send_error,
    send_error_with,
    send_with,
    serve_fixture,
    with_header,
)

SPEC = "plivo/plivo-openapi.yml"
FIXTURES = Path(__file__).parent / "fixtures" / "plivo"
SENDER = "+14155550199"
OTHER = "+14155550100"
CALLBACK = "https://relay.example.com/receipts/plivo"
NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


def fixture(name: str) -> Any:
    return json.loads((FIXTURES / name).read_text())


def settings_for(fake: PlivoFake, **overrides: Any) -> PlivoSettings:
    """Settings that point the adapter at ``fake`` with its credentials."""
    values: dict[str, Any] = {
        "base_url": fake.url,
        "auth_id": fake.auth_id,
        "auth_token": fake.auth_token,
        "sender": SENDER,
        "status_callback": CALLBACK,
        **overrides,
    }
    return PlivoSettings(**values)


class TestPlivoContract(ProviderContractTest):
    """Plivo's Message API as the third-party sketch states it (checked against the docs below)."""

    provider_type = "plivo"
    spec = SPEC
    # The sketch's server is https://api.plivo.com/v1; Prism serves /Account/… without it.
    prism_base_path = "/v1"

    def serve(self) -> PlivoFake:
        return PlivoFake()

    def settings(self, fake: PlivoFake) -> PlivoSettings:
        return settings_for(fake)

    def prism_settings(self, fake: PlivoFake, url: str) -> PlivoSettings:
        # base_url is the host (the adapter adds /v1/Account/…); the spec's server ends in /v1.
        return settings_for(fake, base_url=url.removesuffix(self.prism_base_path))

    def arrange_failure(self, fake: PlivoFake, to: str, kind: str) -> None:
        status, text = {"recipient": (400, "Invalid dst parameter"), "transient": (503, "")}[kind]
        fake.fail(to, status, "", text or "Service Unavailable")

    def mis_build(self, request: CapturedRequest) -> CapturedRequest:
        body = {k: v for k, v in json.loads(request.body).items() if k != "dst"}
        return replace(request, body=json.dumps(body).encode())

    def test_documented_request_matches_the_sketch(self) -> None:
        """Plivo's documented send example validates against the sketch (they agree)."""
        request = CapturedRequest(
            "POST",
            "/v1/Account/MAXXXXXXXXXXXXXXXXXX/Message/",
            {"Authorization": "Basic " + base64.b64encode(b"MA:token").decode()},
            "application/json",
            json.dumps(fixture("send_request.json")).encode(),
        )
        self.validate(request)

    def test_path_without_v1_is_refused(self) -> None:
        """The sketch's server carries /v1: a request to /Account/… without it is refused."""
        request = CapturedRequest(
            "POST",
            "/Account/MAXXXXXXXXXXXXXXXXXX/Message/",
            {"Authorization": "Basic TUE6dG9rZW4="},
            "application/json",
            json.dumps(fixture("send_request.json")).encode(),
        )
        with pytest.raises(ContractError):
            self.validate(request)


fake = serve_fixture(PlivoFake)
plivo = adapter_fixture(settings_for)


async def _error_for(
    fake: PlivoFake, provider: PlivoProvider, status: int, text: str = "refused", **kwargs: Any
) -> ProviderError:
    fake.fail(OTHER, status, "", text, **kwargs)
    return await send_error(provider, message(OTHER), ProviderError)


# -- the wire format, against Plivo's documented examples ------------------------------------


async def test_send_is_a_json_post_with_basic_auth(fake: PlivoFake, plivo: PlivoProvider) -> None:
    """A send is one JSON POST to /v1/Account/{auth_id}/Message/ with Basic auth."""
    await plivo.send(message())
    (request,) = fake.received
    assert (request.method, request.path) == ("POST", f"/v1/Account/{fake.auth_id}/Message/")
    assert request.content_type == "application/json"
    credentials = base64.b64encode(f"{fake.auth_id}:{fake.auth_token}".encode()).decode()
    assert request.headers["Authorization"] == f"Basic {credentials}"


async def test_request_has_the_shape_of_the_documented_example(
    fake: PlivoFake, plivo: PlivoProvider
) -> None:
    """The body has exactly the documented example's fields, with the same JSON types."""
    await plivo.send(message())
    sent = fake.received[0].fields
    documented = fixture("send_request.json")
    assert sent.keys() == documented.keys()
    assert {k: type(v) for k, v in sent.items()} == {k: type(v) for k, v in documented.items()}
    assert (sent["src"], sent["dst"], sent["text"]) == (SENDER, TO, "Your code is 123456")
    assert sent["method"] == "POST"


async def test_our_id_rides_in_the_callback_url(fake: PlivoFake, plivo: PlivoProvider) -> None:
    """Plivo has no client reference: our id is added to the callback url's query."""
    await plivo.send(message())
    url = fake.received[0].fields["url"]
    assert url.startswith(CALLBACK + "?")
    assert parse_qs(urlsplit(url).query) == {"smsrelay_id": ["m-1"]}


def test_reference_keeps_an_existing_query() -> None:
    """A callback URL with its own query keeps it, our id appended."""
    assert with_reference("https://x.test/cb?tenant=a", "m:1") == (
        "https://x.test/cb?tenant=a&smsrelay_id=m%3A1"
    )


async def test_no_callback_fields_unless_configured(fake: PlivoFake) -> None:
    """Without status_callback neither url nor method is sent."""
    await send_with(settings_for(fake, status_callback=None), message(**{"from": "ACME"}))
    assert fake.received[0].fields == {"src": "ACME", "dst": TO, "text": "Your code is 123456"}


async def test_documented_answer_gives_the_message_uuid(
    fake: PlivoFake, plivo: PlivoProvider
) -> None:
    """Plivo's documented 202 answer yields its first message_uuid and no segment count."""
    fake.canned = fixture("send_response.json")
    result = await plivo.send(message())
    assert result.provider_message_id == "db3ce55a-7f1d-11e1-8ea7-1231380bc196"
    assert result.segments is None


async def test_answer_without_uuid_is_permanent(fake: PlivoFake, plivo: PlivoProvider) -> None:
    """A 202 without message_uuid is permanent: Plivo queued it, a retry could send twice."""
    fake.canned = {"api_id": "x", "message": "message(s) queued", "message_uuid": []}
    with pytest.raises(PermanentProviderError, match="message_uuid"):
        await plivo.send(message())


def test_base_url_is_overridable() -> None:
    """base_url replaces https://api.plivo.com; the /v1/Account path follows it."""
    config = PlivoSettings(auth_id="MA" + "0" * 18, auth_token="t", sender=SENDER)
    assert PlivoProvider("p", config).messages_url == (
        f"https://api.plivo.com/v1/Account/MA{'0' * 18}/Message/"
    )
    moved = config.model_copy(update={"base_url": "http://127.0.0.1:9/"})
    assert PlivoProvider("p", moved).messages_url.startswith("http://127.0.0.1:9/v1/Account/")


# -- errors ---------------------------------------------------------------------------------


async def test_invalid_dst_is_recipient_rejected(fake: PlivoFake, plivo: PlivoProvider) -> None:
    """A 400 whose error names dst raises RecipientRejected with code http-400."""
    error = await _error_for(fake, plivo, 400, f"Invalid dst parameter: {OTHER}")
    assert type(error) is RecipientRejected
    assert error.code == "http-400"


async def test_other_400_is_permanent(fake: PlivoFake, plivo: PlivoProvider) -> None:
    """A 400 about anything else (insufficient credit) is a plain PermanentProviderError."""
    error = await _error_for(fake, plivo, 400, "Insufficient Credit")
    assert type(error) is PermanentProviderError


async def test_wrong_token_is_authentication_failed(fake: PlivoFake) -> None:
    """The fake's real 401 for a wrong auth_token raises AuthenticationFailed."""
    error = await send_error_with(
        settings_for(fake, auth_token="not-the-token"), message(), AuthenticationFailed
    )
    assert error.code == "http-401"


async def test_documented_not_found_error_is_authentication_failed(
    fake: PlivoFake, plivo: PlivoProvider
) -> None:
    """Plivo's documented 404 {"error": "not found"} on the Message URL: no such account."""
    error = await _error_for(fake, plivo, 404, fixture("error_response.json")["error"])
    assert type(error) is AuthenticationFailed
    assert "not found" in str(error)


async def test_rate_limit_carries_retry_after(fake: PlivoFake, plivo: PlivoProvider) -> None:
    """A 429 raises RateLimited with Retry-After in seconds."""
    error = await _error_for(fake, plivo, 429, "too many requests", retry_after=2)
    assert isinstance(error, RateLimited)
    assert error.retry_after == 2.0


@pytest.mark.parametrize("status", [500, 502, 503])
async def test_server_error_is_transient(
    fake: PlivoFake, plivo: PlivoProvider, status: int
) -> None:
    """A 5xx raises TransientProviderError."""
    error = await _error_for(fake, plivo, status, "server error")
    assert type(error) is TransientProviderError


async def test_error_text_masks_number_and_token(fake: PlivoFake, plivo: PlivoProvider) -> None:
    """An error quoting the number or the auth token reaches the exception masked."""
    error = await _error_for(fake, plivo, 400, f"dst {OTHER} refused for {fake.auth_token}")
    assert OTHER not in str(error) and fake.auth_token not in str(error)


def test_settings_refuse_a_malformed_auth_id() -> None:
    """An auth_id that is not MA/SA + 18 characters is refused at start-up."""
    with pytest.raises(ValidationError, match="auth_id"):
        PlivoSettings(auth_id="nope", auth_token="t", sender=SENDER)


def test_settings_repr_hides_the_token() -> None:
    """The auth token does not show in the settings' repr."""
    config = PlivoSettings(auth_id="MA" + "0" * 18, auth_token="s3cret-token", sender=SENDER)
    assert "s3cret-token" not in repr(config)


# -- receipts -------------------------------------------------------------------------------


@pytest.fixture
def provider() -> PlivoProvider:
    config = PlivoSettings(auth_id="MA" + "0" * 18, auth_token=AUTH_TOKEN, sender=SENDER)
    return PlivoProvider("plivo", config)


@pytest.mark.parametrize("method", ["POST", "GET"])
def test_signed_callback_is_accepted_and_parsed(provider: PlivoProvider, method: str) -> None:
    """A V3-signed callback (form POST or GET) verifies and parses, our id from the URL."""
    webhook = signed_callback(callback("uuid-1", ErrorCode="000"), "n-1", method=method)
    provider.verify_receipt(webhook, NOW)
    (receipt,) = provider.parse_receipts(webhook)
    assert receipt.provider_message_id == "uuid-1"
    assert receipt.message_id == "m-1"
    assert receipt.status is ReceiptStatus.DELIVERED
    assert receipt.error_code is None
    assert receipt.at == datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


def test_tampered_callback_is_refused(provider: PlivoProvider) -> None:
    """Changing a signed form parameter after signing breaks the signature."""
    webhook = signed_callback(callback("uuid-1", status="undelivered"), "n-1")
    tampered = webhook.body.replace(b"Status=undelivered", b"Status=delivered")
    with pytest.raises(BadSignature):
        provider.verify_receipt(replace(webhook, body=tampered), NOW)


def test_callback_to_another_url_is_refused(provider: PlivoProvider) -> None:
    """The URL is signed: the same callback presented for another message id is refused."""
    webhook = signed_callback(callback("uuid-1"), "n-1")
    moved = replace(webhook, url=webhook.url.replace("m-1", "m-2"))
    with pytest.raises(BadSignature):
        provider.verify_receipt(moved, NOW)


def test_callback_signed_with_another_token_is_refused(provider: PlivoProvider) -> None:
    """A callback signed with a different auth token is refused."""
    webhook = signed_callback(callback("uuid-1"), "n-1", token="someone-elses-token")
    with pytest.raises(BadSignature):
        provider.verify_receipt(webhook, NOW)


@pytest.mark.parametrize("missing", ["x-plivo-signature-v3", "x-plivo-signature-v3-nonce"])
def test_callback_without_its_headers_is_refused(provider: PlivoProvider, missing: str) -> None:
    """A callback missing the V3 signature or its nonce is refused."""
    webhook = signed_callback(callback("uuid-1"), "n-1")
    changed = with_header(webhook, missing, None)
    with pytest.raises(BadSignature):
        provider.verify_receipt(changed, NOW)


def test_replay_key_is_the_signed_content_in_canonical_form(provider: PlivoProvider) -> None:
    """Reordered fields, a GET of the same query, another nonce: one key; other content: another."""
    hook = signed_callback(callback("uuid-1"), "n-1")
    reordered = replace(hook, body="&".join(reversed(hook.body.decode().split("&"))).encode())
    renonced = signed_callback(callback("uuid-1"), "n-2")
    key = provider.replay_key(hook)
    assert provider.replay_key(reordered) == key == provider.replay_key(renonced)
    assert provider.replay_key(signed_callback(callback("uuid-2"), "n-1")) != key


def test_same_callback_with_a_new_nonce_is_signed_anew(provider: PlivoProvider) -> None:
    """The nonce is signed: reusing one callback's signature under another nonce fails."""
    first = signed_callback(callback("uuid-1"), "n-1")
    headers = {**first.headers, "x-plivo-signature-v3-nonce": "n-2"}
    with pytest.raises(BadSignature):
        provider.verify_receipt(replace(first, headers=headers), NOW)


def test_one_of_several_listed_signatures_is_enough(provider: PlivoProvider) -> None:
    """The header may list one signature per active token; a match with ours verifies."""
    webhook = signed_callback(callback("uuid-1"), "n-1")
    ours = webhook.headers["x-plivo-signature-v3"]
    changed = with_header(webhook, "x-plivo-signature-v3", f"b3RoZXI=,{ours}")
    provider.verify_receipt(changed, NOW)


def test_signature_matches_plivos_sdk_vectors() -> None:
    """v3_signature reproduces what plivo-python computes (fixtures/plivo/signature_vectors.json)."""
    for vector in fixture("signature_vectors.json")["vectors"]:
        form = {k: [v] for k, v in vector["form"].items()}
        computed = v3_signature(
            vector["method"], vector["url"], form, vector["nonce"], vector["auth_token"]
        )
        assert computed == vector["signature"], vector["name"]


def test_sdk_vector_callback_verifies_and_reports_parts(provider: PlivoProvider) -> None:
    """The SDK-signed two-unit callback verifies end to end and reports part 1 of 2."""
    vector = fixture("signature_vectors.json")["vectors"][0]
    webhook = Webhook(
        "POST",
        vector["url"],
        {
            "content-type": "application/x-www-form-urlencoded",
            "x-plivo-signature-v3": vector["signature"],
            "x-plivo-signature-v3-nonce": vector["nonce"],
        },
        urlencode(vector["form"]).encode(),
    )
    provider.verify_receipt(webhook, NOW)
    (receipt,) = provider.parse_receipts(webhook)
    assert (receipt.part, receipt.parts, receipt.message_id) == (1, 2, "order-42")


@pytest.mark.parametrize(
    ("status", "expected"),
    [
        ("delivered", ReceiptStatus.DELIVERED),
        ("undelivered", ReceiptStatus.UNDELIVERED),
        ("failed", ReceiptStatus.FAILED),
        ("rejected", ReceiptStatus.FAILED),
        ("sent", ReceiptStatus.PENDING),
        ("queued", ReceiptStatus.PENDING),
    ],
)
def test_callback_status_is_normalised(
    provider: PlivoProvider, status: str, expected: ReceiptStatus
) -> None:
    """Each callback Status maps onto ReceiptStatus; the raw one is kept."""
    (receipt,) = provider.parse_receipts(signed_callback(callback("u", status=status), "n"))
    assert (receipt.status, receipt.provider_status) == (expected, status)


def test_failed_callback_keeps_the_error_code(provider: PlivoProvider) -> None:
    """An undelivered callback keeps Plivo's ErrorCode (50: invalid destination number)."""
    params = callback("u", status="undelivered", ErrorCode="50")
    (receipt,) = provider.parse_receipts(signed_callback(params, "n"))
    assert receipt.error_code == "50"


def test_multipart_callback_reports_the_parent_uuid_and_units(provider: PlivoProvider) -> None:
    """A later part reports under ParentMessageUUID (the id the send returned) with Units."""
    params = callback("part-2", ParentMessageUUID="parent-1", Units="3")
    (receipt,) = provider.parse_receipts(signed_callback(params, "n"))
    assert (receipt.provider_message_id, receipt.part, receipt.parts) == ("parent-1", None, 3)


def test_sdk_vector_callback_reports_the_whole_message_cost(provider: PlivoProvider) -> None:
    """TotalAmount (Units x TotalRate: 2 x 0.0050) is the receipt's cost, in US dollars."""
    vector = fixture("signature_vectors.json")["vectors"][0]
    webhook = signed_callback(vector["form"], "n")
    (receipt,) = provider.parse_receipts(webhook)
    assert (receipt.cost, receipt.currency) == (Decimal("0.0100"), "USD")


@pytest.mark.parametrize("amount", ["", "free", "1e3", "0.01.2", "9" * 20, "NaN"])
def test_callback_with_a_malformed_amount_has_no_cost(provider: PlivoProvider, amount: str) -> None:
    """A TotalAmount that is not a plain amount is no cost (None), the receipt still parses."""
    (receipt,) = provider.parse_receipts(signed_callback(callback("u", TotalAmount=amount), "n"))
    assert receipt.cost is None
    assert receipt.status is ReceiptStatus.DELIVERED
