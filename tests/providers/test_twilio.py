"""The Twilio adapter: its contract with Twilio's OpenAPI description, and its behaviour."""

from __future__ import annotations

import asyncio
import base64
import json
import sys
from dataclasses import replace
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlencode

import pytest
from pydantic import ValidationError

from smsrelay.errors import (
    AuthenticationFailed,
    PermanentProviderError,
    RateLimited,
    RecipientRejected,
    TransientProviderError,
)
from smsrelay.models import SendRequest
from smsrelay.providers.twilio import TwilioProvider, TwilioSettings
from tests.fakes.twilio import TwilioFake
from tests.providers.contract import (
    TO,
    CapturedRequest,
    ContractError,
    ProviderContractTest,
    adapter_fixture,
    assert_refused_connection_is_transient,
    message,
    send_error,
    send_error_with,
    send_with,
    serve_fixture,
    spec_document,
)

SPEC = "twilio/twilio_api_v2010.json"
MESSAGES = "/2010-04-01/Accounts/{AccountSid}/Messages.json"
SENDER = "+14155550199"
SERVICE_SID = "MG" + "fedcba9876543210" * 2
OTHER = "+14155550100"
ROOT = Path(__file__).resolve().parents[2]


def settings_for(fake: TwilioFake, **overrides: Any) -> TwilioSettings:
    """Settings that point the adapter at ``fake`` with its credentials."""
    values: dict[str, Any] = {
        "base_url": fake.url,
        "account_sid": fake.account_sid,
        "auth_token": fake.auth_token,
        "sender": SENDER,
        **overrides,
    }
    return TwilioSettings(**values)


def form_of(request: CapturedRequest) -> dict[str, str]:
    return dict(parse_qsl(request.body.decode()))


def _pascal(name: str) -> str:
    return "".join(part.capitalize() for part in name.split("_"))


class TestTwilioContract(ProviderContractTest):
    """Twilio's Messages API, as its OpenAPI description and x-twilio rules state it."""

    provider_type = "twilio"
    spec = SPEC

    def serve(self) -> TwilioFake:
        return TwilioFake()

    def settings(self, fake: TwilioFake) -> TwilioSettings:
        return settings_for(fake)

    def arrange_failure(self, fake: TwilioFake, to: str, kind: str) -> None:
        status, code = {"recipient": (400, 21211), "transient": (503, 20503)}[kind]
        fake.fail(to, status, code, f"Refused {to}")

    def mis_build(self, request: CapturedRequest) -> CapturedRequest:
        form = {k: v for k, v in form_of(request).items() if k != "To"}
        return replace(request, body=urlencode(form).encode())

    def check_extensions(self, request: CapturedRequest) -> None:
        # The schema requires only To; x-twilio.conditional says which others are needed.
        operation = spec_document(SPEC)["paths"][MESSAGES]["post"]
        form = form_of(request)
        for group in operation["x-twilio"]["conditional"]:
            names = [_pascal(name) for name in group]
            if not any(form.get(name) for name in names):
                raise ContractError(f"one of {names} is required (x-twilio.conditional)")

    async def test_messaging_service_send_matches_the_spec(self, fake: TwilioFake) -> None:
        """A send through a Messaging Service, without a From, validates too."""
        config = settings_for(fake, sender=None, messaging_service_sid=SERVICE_SID)
        provider = TwilioProvider("twilio", config)
        try:
            await provider.send(message())
        finally:
            await provider.close()
        self.validate(self.captured(fake)[0])

    async def test_adapter_without_sender_breaks_the_contract(self, fake: TwilioFake) -> None:
        """An adapter that forgets From and MessagingServiceSid is caught by x-twilio rules."""
        provider = _SenderlessTwilio("twilio", settings_for(fake))
        try:
            with pytest.raises(PermanentProviderError):
                await provider.send(message())
        finally:
            await provider.close()
        with pytest.raises(ContractError, match=r"x-twilio\.conditional"):
            self.validate(self.captured(fake)[0])

    def test_json_body_is_refused_by_the_spec(self) -> None:
        """A JSON body where Twilio wants a form is a contract violation."""
        request = CapturedRequest(
            "POST",
            MESSAGES.replace("{AccountSid}", "AC" + "0" * 32),
            {"Authorization": "Basic QUM6eA=="},
            "application/json",
            b'{"To": "+1"}',
        )
        with pytest.raises(ContractError):
            self.validate(request)


class _SenderlessTwilio(TwilioProvider):
    """A deliberately broken adapter: it drops every sender field."""

    def form(self, request: SendRequest) -> dict[str, str]:
        fields = super().form(request)
        fields.pop("From", None)
        fields.pop("MessagingServiceSid", None)
        return fields


fake = serve_fixture(TwilioFake)
twilio = adapter_fixture(settings_for)


async def _error_for(
    fake: TwilioFake, provider: TwilioProvider, status: int, code: int, **kwargs: Any
) -> BaseException:
    fake.fail(OTHER, status, code, **kwargs)
    return await send_error(provider, message(OTHER), Exception)


# -- the wire format ------------------------------------------------------------------------


async def test_send_is_a_form_post_with_basic_auth(
    fake: TwilioFake, twilio: TwilioProvider
) -> None:
    """A send is one form-encoded POST to the account's Messages.json with Basic auth."""
    await twilio.send(message())
    (request,) = fake.received
    assert request.method == "POST"
    assert request.path == f"/2010-04-01/Accounts/{fake.account_sid}/Messages.json"
    assert request.content_type == "application/x-www-form-urlencoded"
    credentials = f"{fake.account_sid}:{fake.auth_token}".encode()
    expected = "Basic " + base64.b64encode(credentials).decode()
    assert request.headers["Authorization"] == expected
    assert request.form == {"To": TO, "Body": "Your code is 123456", "From": SENDER}


async def test_result_carries_sid_and_segments(fake: TwilioFake, twilio: TwilioProvider) -> None:
    """The 201's sid is the provider message id and num_segments the segment count."""
    result = await twilio.send(message(body="x" * 200))
    answer = json.loads(fake.received[0].answer)
    assert result.provider_message_id == answer["sid"]
    assert result.provider_message_id.startswith("SM")
    assert result.segments == 2


async def test_request_sender_overrides_configured_sender(
    fake: TwilioFake, twilio: TwilioProvider
) -> None:
    """A request's own sender replaces the configured one as From."""
    await twilio.send(message(**{"from": "ACME"}))
    assert fake.received[0].form["From"] == "ACME"


async def test_messaging_service_is_sent_when_configured(fake: TwilioFake) -> None:
    """With a Messaging Service and no sender, MessagingServiceSid replaces From."""
    provider = TwilioProvider(
        "twilio", settings_for(fake, sender=None, messaging_service_sid=SERVICE_SID)
    )
    try:
        await provider.send(message())
    finally:
        await provider.close()
    form = fake.received[0].form
    assert form["MessagingServiceSid"] == SERVICE_SID
    assert "From" not in form


async def test_status_callback_is_sent_when_configured(fake: TwilioFake) -> None:
    """A configured status_callback goes out as StatusCallback with every message."""
    callback = "https://relay.example.com/receipts/twilio"
    await send_with(settings_for(fake, status_callback=callback), message())
    assert fake.received[0].form["StatusCallback"] == callback


async def test_no_status_callback_unless_configured(
    fake: TwilioFake, twilio: TwilioProvider
) -> None:
    """Without status_callback no StatusCallback field is sent."""
    await twilio.send(message())
    assert "StatusCallback" not in fake.received[0].form


# -- errors ---------------------------------------------------------------------------------


async def test_invalid_number_is_recipient_rejected(
    fake: TwilioFake, twilio: TwilioProvider
) -> None:
    """Twilio 21211 (invalid To) raises RecipientRejected with the code."""
    error = await _error_for(
        fake, twilio, 400, 21211, message=f"Invalid 'To' Phone Number: {OTHER}"
    )
    assert isinstance(error, RecipientRejected)
    assert error.code == "21211"


async def test_unsubscribed_recipient_is_permanent(
    fake: TwilioFake, twilio: TwilioProvider
) -> None:
    """Twilio 21610 (recipient replied STOP) is a permanent RecipientRejected."""
    error = await _error_for(fake, twilio, 400, 21610)
    assert isinstance(error, RecipientRejected)
    assert not error.retryable


@pytest.mark.parametrize(
    ("code", "expected"),
    [
        (21614, RecipientRejected),
        (21612, RecipientRejected),
        (21408, PermanentProviderError),
        (21606, PermanentProviderError),
        (21999, PermanentProviderError),
    ],
)
async def test_client_error_codes_are_permanent(
    fake: TwilioFake, twilio: TwilioProvider, code: int, expected: type[Exception]
) -> None:
    """Recipient codes are RecipientRejected; account and unknown 4xx codes are permanent."""
    error = await _error_for(fake, twilio, 400, code)
    assert type(error) is expected


async def test_wrong_auth_token_is_authentication_failed(fake: TwilioFake) -> None:
    """The fake's real 401 / 20003 for a wrong AuthToken raises AuthenticationFailed."""
    error = await send_error_with(
        settings_for(fake, auth_token="not-the-token"), message(), AuthenticationFailed
    )
    assert error.code == "20003"


async def test_unknown_account_is_authentication_failed(
    fake: TwilioFake, twilio: TwilioProvider
) -> None:
    """A 404 / 20404 on the account's Messages URL (no such account) is AuthenticationFailed."""
    error = await _error_for(fake, twilio, 404, 20404)
    assert isinstance(error, AuthenticationFailed)


@pytest.mark.parametrize(("status", "code"), [(429, 20429), (429, 29999)])
async def test_rate_limit_carries_retry_after(
    fake: TwilioFake, twilio: TwilioProvider, status: int, code: int
) -> None:
    """20429, and any HTTP 429, raise RateLimited carrying Retry-After in seconds."""
    error = await _error_for(fake, twilio, status, code, retry_after=7)
    assert isinstance(error, RateLimited)
    assert error.retry_after == 7.0


async def test_server_error_is_transient(fake: TwilioFake, twilio: TwilioProvider) -> None:
    """A 500 raises TransientProviderError (not RateLimited), so another provider is tried."""
    error = await _error_for(fake, twilio, 500, 20500)
    assert type(error) is TransientProviderError
    assert error.retryable


async def test_refused_connection_is_transient() -> None:
    """A refused connection raises TransientProviderError with code "network"."""
    async with TwilioFake() as gone:
        url = gone.url
    config = TwilioSettings(
        base_url=url, account_sid=gone.account_sid, auth_token=gone.auth_token, sender=SENDER
    )
    await assert_refused_connection_is_transient(config)


async def test_error_text_masks_the_number(fake: TwilioFake, twilio: TwilioProvider) -> None:
    """Twilio quotes the refused number; the exception text carries it masked."""
    error = await _error_for(
        fake, twilio, 400, 21211, message=f"Invalid 'To' Phone Number: {OTHER}"
    )
    assert OTHER not in str(error)
    assert OTHER[-2:] in str(error)


async def test_auth_token_never_appears_in_error_text(fake: TwilioFake) -> None:
    """Not even an answer that echoes the AuthToken puts it into an exception's str."""
    provider = TwilioProvider("twilio", settings_for(fake))
    fake.fail(OTHER, 400, 21211, f"token {fake.auth_token} rejected")
    wrong = TwilioProvider("twilio", settings_for(fake, auth_token="wrong-token-123"))
    try:
        errors = [
            await _caught(provider.send(message(OTHER))),
            await _caught(wrong.send(message())),
        ]
    finally:
        await provider.close()
        await wrong.close()
    for error in errors:
        assert fake.auth_token not in str(error) and "wrong-token-123" not in str(error)


async def _caught(send: Any) -> BaseException:
    with pytest.raises(PermanentProviderError) as caught:
        await send
    return caught.value


# -- settings -------------------------------------------------------------------------------


def test_settings_need_a_sender_or_messaging_service() -> None:
    """Settings with neither sender nor messaging_service_sid are refused at start-up."""
    with pytest.raises(ValidationError, match="sender or messaging_service_sid"):
        TwilioSettings(account_sid="AC" + "0" * 32, auth_token="t")


def test_settings_refuse_a_malformed_account_sid() -> None:
    """An AccountSid that is not AC + 32 hex digits is refused at start-up."""
    with pytest.raises(ValidationError, match="account_sid"):
        TwilioSettings(account_sid="ACnope", auth_token="t", sender=SENDER)


def test_settings_repr_hides_the_auth_token() -> None:
    """The AuthToken is a secret: it does not show in the settings' repr."""
    config = TwilioSettings(account_sid="AC" + "0" * 32, auth_token="s3cret-token", sender=SENDER)
    assert "s3cret-token" not in repr(config)


# -- the fake as a process ------------------------------------------------------------------


async def test_fake_runs_as_a_process_and_reports_received() -> None:
    """`python -m tests.fakes.twilio` serves the API and lists sends at /_fake/received."""
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "tests.fakes.twilio",
        "--port",
        "0",
        cwd=ROOT,
        stdout=asyncio.subprocess.PIPE,
    )
    try:
        assert process.stdout is not None
        line = await asyncio.wait_for(process.stdout.readline(), timeout=20)
        url = line.decode().removeprefix("listening on ").strip()
        await _send_and_check_received(url)
    finally:
        process.terminate()
        await process.wait()


async def _send_and_check_received(url: str) -> None:
    probe = TwilioFake()  # only for its default credentials
    config = TwilioSettings(
        base_url=url, account_sid=probe.account_sid, auth_token=probe.auth_token, sender=SENDER
    )
    provider = TwilioProvider("twilio", config)
    try:
        await provider.send(message())
        async with provider.session.get(f"{url}/_fake/received") as resp:
            received = await resp.json()
    finally:
        await provider.close()
    assert [(r["To"], r["_status"]) for r in received] == [(TO, 201)]
