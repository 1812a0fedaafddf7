"""The AWS SNS adapter: its contract with SNS's service model, against a real moto server.

moto (``moto_server`` on loopback, one per test session) is SNS's contract mock: it parses
the query protocol as SNS does and lists received SMS at ``/moto-api/data.json``. The
outgoing request is also validated against botocore's model of SNS
(``aws-sns/service-2.json``): the ``Publish`` input shape's members, required members,
types and query-protocol serialization, and SigV4 auth. Prism does not apply: the model is
not OpenAPI. Errors moto cannot produce come from ``tests.fakes.sns.SnsFake``, a front that
answers SNS error XML; a second moto that checks signatures proves the SigV4 signing.
"""

from __future__ import annotations

import base64
import binascii
import json
import os
import re
import socket
import subprocess
import sys
import time
import urllib.request
import xml.etree.ElementTree as ET
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlencode

import aiohttp
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
    UnconfirmedSend,
)
from smsrelay.models import SendRequest
from smsrelay.providers.base import Webhook
from smsrelay.providers.sns import SnsProvider, SnsSettings
from tests.fakes.sns import SnsFake
from tests.providers.contract import (
    TO,
    CapturedRequest,
    ContractError,
    ProviderContractTest,
    assert_refused_connection_is_transient,
    assert_table_class,
    message,
    send_error,
    send_error_with,
    send_with,
    spec_document,
)

SPEC = "aws-sns/service-2.json"
REGION = "eu-west-1"
ACCESS_KEY = "AKIAIOSFODNN7EXAMPLE"
SECRET_KEY = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"
OTHER = "+14155550100"
_E164 = re.compile(r"^\+[1-9]\d{6,14}$")


def settings_for(url: str, **overrides: Any) -> SnsSettings:
    """Settings that point the adapter at ``url``."""
    values: dict[str, Any] = {
        "base_url": url,
        "region": REGION,
        "access_key_id": ACCESS_KEY,
        "secret_access_key": SECRET_KEY,
        **overrides,
    }
    return SnsSettings(**values)


def form_of(request: CapturedRequest) -> dict[str, str]:
    return dict(parse_qsl(request.body.decode(), keep_blank_values=True))


def attributes_of(form: dict[str, str]) -> dict[str, tuple[str, str]]:
    """The Publish call's MessageAttributes as name → (DataType, StringValue)."""
    found = {}
    index = 1
    while f"MessageAttributes.entry.{index}.Name" in form:
        prefix = f"MessageAttributes.entry.{index}"
        found[form[f"{prefix}.Name"]] = (
            form[f"{prefix}.Value.DataType"],
            form[f"{prefix}.Value.StringValue"],
        )
        index += 1
    return found


# -- botocore's service model as a validator --------------------------------------------------


def _header(headers: Any, name: str) -> str | None:
    return next((v for k, v in headers.items() if k.lower() == name.lower()), None)


def validate_query_request(relative: str, request: CapturedRequest) -> None:
    """Raise ``ContractError`` unless ``request`` is a valid query-protocol call of the model.

    Checks what botocore's model states: method and URI of the operation, the form content
    type, ``Action``/``Version``, SigV4 auth for the model's signing name, and the input
    shape (members, required members, scalar types, query serialization of maps and lists).
    """
    model = spec_document(relative)
    form = form_of(request)
    operation = model["operations"].get(form.pop("Action", ""))
    if operation is None:
        raise ContractError(f"Action is missing or not an operation of {relative}")
    _check_http(model, operation, request, form.pop("Version", None))
    used: set[str] = set()
    _check_shape(model["shapes"], operation["input"]["shape"], "", form, used)
    unknown = sorted(set(form) - used)
    if unknown:
        raise ContractError(f"{operation['name']}: unknown parameters {unknown}")


def _check_http(
    model: dict[str, Any], operation: dict[str, Any], request: CapturedRequest, version: str | None
) -> None:
    http = operation["http"]
    if (request.method, request.path) != (http["method"], http["requestUri"]):
        raise ContractError(f"{operation['name']} is {http['method']} {http['requestUri']}")
    if request.content_type != "application/x-www-form-urlencoded":
        raise ContractError(f"query protocol needs a form body, not {request.content_type}")
    if version != model["metadata"]["apiVersion"]:
        raise ContractError(f"Version must be {model['metadata']['apiVersion']}, not {version}")
    service = model["metadata"].get("signingName", model["metadata"]["endpointPrefix"])
    scope = rf"^AWS4-HMAC-SHA256 Credential=\S+/\d{{8}}/[a-z0-9-]+/{service}/aws4_request, "
    authorization = _header(request.headers, "Authorization") or ""
    if not re.match(scope + r"SignedHeaders=\S+, Signature=[0-9a-f]{64}$", authorization):
        raise ContractError(f"no SigV4 Authorization for service {service}: {authorization!r}")
    if not _header(request.headers, "X-Amz-Date"):
        raise ContractError("SigV4 needs X-Amz-Date")


def _present(form: dict[str, str], key: str) -> bool:
    return key in form or any(k.startswith(key + ".") for k in form)


def _check_shape(
    shapes: dict[str, Any], name: str, key: str, form: dict[str, str], used: set[str]
) -> None:
    shape = shapes[name]
    kind = shape["type"]
    if kind == "structure":
        _check_structure(shapes, shape, key, form, used)
    elif kind == "map":
        parts = [(shape["key"], "key"), (shape["value"], "value")]
        _check_entries(shapes, key, form, used, "entry", parts)
    elif kind == "list":
        label = shape["member"].get("locationName", "member")
        _check_entries(shapes, key, form, used, label, [(shape["member"], None)])
    else:
        used.add(key)
        _check_scalar(shape, key, form[key])


def _check_structure(
    shapes: dict[str, Any], shape: dict[str, Any], key: str, form: dict[str, str], used: set[str]
) -> None:
    for member, ref in shape["members"].items():
        member_key = f"{key}.{ref.get('locationName', member)}" if key else member
        if _present(form, member_key):
            _check_shape(shapes, ref["shape"], member_key, form, used)
        elif member in shape.get("required", []):
            raise ContractError(f"{member_key} is required")


def _check_entries(
    shapes: dict[str, Any],
    key: str,
    form: dict[str, str],
    used: set[str],
    label: str,
    parts: list[tuple[dict[str, Any], str | None]],
) -> None:
    # Query protocol: a map is prefix.entry.N.Name/Value, a list prefix.member.N (from 1).
    index = 1
    while _present(form, f"{key}.{label}.{index}"):
        entry = f"{key}.{label}.{index}"
        for ref, default in parts:
            part = entry if default is None else f"{entry}.{ref.get('locationName', default)}"
            if not _present(form, part):
                raise ContractError(f"{part} is required")
            _check_shape(shapes, ref["shape"], part, form, used)
        index += 1


def _check_scalar(shape: dict[str, Any], key: str, value: str) -> None:
    kind = shape["type"]
    if kind == "string":
        if "enum" in shape and value not in shape["enum"]:
            raise ContractError(f"{key}={value!r} is not one of {shape['enum']}")
        if not shape.get("min", 0) <= len(value) <= shape.get("max", len(value)):
            raise ContractError(f"{key} breaks the length limits of its shape")
    elif kind in ("integer", "long") and not re.fullmatch(r"-?\d+", value):
        raise ContractError(f"{key}={value!r} is not an {kind}")
    elif kind == "boolean" and value not in ("true", "false"):
        raise ContractError(f"{key}={value!r} is not a boolean")
    elif kind == "blob":
        try:
            base64.b64decode(value, validate=True)
        except binascii.Error:
            raise ContractError(f"{key} is not base64") from None


def validate_publish_answer(relative: str, answer: bytes) -> None:
    """Raise ``ContractError`` unless ``answer`` is the model's XML PublishResponse."""
    model = spec_document(relative)
    operation = model["operations"]["Publish"]
    namespace = "{" + model["metadata"]["xmlNamespace"] + "}"
    root = ET.fromstring(answer)
    wrapper = root.find(namespace + operation["output"]["resultWrapper"])
    if root.tag != namespace + "PublishResponse" or wrapper is None:
        raise ContractError(f"not a PublishResponse in {namespace}: {answer[:200]!r}")
    members = model["shapes"][operation["output"]["shape"]]["members"]
    for child in wrapper:
        name = child.tag.removeprefix(namespace)
        if name not in members:
            raise ContractError(f"PublishResult has unknown member {name}")
    if not wrapper.findtext(namespace + "MessageId"):
        raise ContractError("PublishResult has no MessageId")


# -- moto -------------------------------------------------------------------------------------


@dataclass
class Moto:
    """One ``moto_server`` on loopback."""

    url: str
    process: subprocess.Popen[bytes]

    async def reset(self) -> None:
        """Forget everything this server has received."""
        async with (
            aiohttp.ClientSession() as session,
            session.post(f"{self.url}/moto-api/reset") as resp,
        ):
            assert resp.status == 200

    async def sms(self) -> list[dict[str, str]]:
        """The SMS moto received: ``message``, ``message_id`` and ``phone_number`` each."""
        async with (
            aiohttp.ClientSession() as session,
            session.get(f"{self.url}/moto-api/data.json") as resp,
        ):
            data = await resp.json(content_type=None)
        return list(data["sns"]["SMS"])


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def start_moto(log: Path, **env: str) -> Moto:
    """Start ``moto_server`` on a free port and wait until it answers."""
    port = _free_port()
    command = [str(Path(sys.executable).parent / "moto_server"), "-H", "127.0.0.1", "-p", str(port)]
    with log.open("wb") as out:
        process = subprocess.Popen(
            command, stdout=out, stderr=subprocess.STDOUT, env={**os.environ, **env}
        )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if process.poll() is not None:
            pytest.fail(f"moto_server exited: {log.read_text(errors='replace')[-2000:]}")
        try:
            with urllib.request.urlopen(f"{url}/moto-api/data.json", timeout=1):
                return Moto(url, process)
        except OSError:
            time.sleep(0.1)
    process.kill()
    pytest.fail("moto_server did not answer within 60 s")


def stop_moto(moto: Moto) -> None:
    moto.process.terminate()
    try:
        moto.process.wait(timeout=10)
    except subprocess.TimeoutExpired:
        moto.process.kill()
        moto.process.wait()


@pytest.fixture(scope="session")
def moto_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Moto]:
    """A moto SNS for the whole session (it does not check signatures)."""
    moto = start_moto(tmp_path_factory.mktemp("moto") / "moto.log")
    yield moto
    stop_moto(moto)


@pytest.fixture(scope="session")
def strict_moto(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Moto, dict[str, str]]]:
    """A moto that checks SigV4 and IAM, with an IAM user allowed sns:Publish, and its key."""
    # The first three calls (the IAM set-up below) are let through unauthenticated.
    moto = start_moto(
        tmp_path_factory.mktemp("moto") / "strict.log", INITIAL_NO_AUTH_ACTION_COUNT="3"
    )
    try:
        yield moto, _publisher_key(moto.url)
    finally:
        stop_moto(moto)


def _publisher_key(url: str) -> dict[str, str]:
    import boto3  # moto's own dependency; only the IAM set-up of the strict moto needs it

    iam = boto3.client(
        "iam",
        endpoint_url=url,
        region_name="us-east-1",
        aws_access_key_id=ACCESS_KEY,
        aws_secret_access_key=SECRET_KEY,
    )
    iam.create_user(UserName="smsrelay")
    key = iam.create_access_key(UserName="smsrelay")["AccessKey"]
    policy = {
        "Version": "2012-10-17",
        "Statement": [{"Effect": "Allow", "Action": "sns:Publish", "Resource": "*"}],
    }
    iam.put_user_policy(
        UserName="smsrelay", PolicyName="publish", PolicyDocument=json.dumps(policy)
    )
    return {"access_key_id": key["AccessKeyId"], "secret_access_key": key["SecretAccessKey"]}


@pytest.fixture
async def moto(moto_server: Moto) -> Moto:
    """The session's moto, emptied for this test."""
    await moto_server.reset()
    return moto_server


@pytest.fixture
async def front(moto: Moto) -> AsyncIterator[SnsFake]:
    """An SnsFake in front of moto."""
    async with SnsFake(upstream=moto.url) as running:
        yield running


@pytest.fixture
async def sns(front: SnsFake) -> AsyncIterator[SnsProvider]:
    provider = SnsProvider("sns", settings_for(front.url))
    yield provider
    await provider.close()


# -- the contract -----------------------------------------------------------------------------


class TestSnsContract(ProviderContractTest):
    """SNS Publish, as botocore's service model states it, sent to moto."""

    provider_type = "sns"
    spec = SPEC
    prism_skip = "moto is its contract mock (SNS's description is a botocore model, not OpenAPI)"

    @pytest.fixture
    async def fake(self, moto: Moto) -> AsyncIterator[SnsFake]:
        async with SnsFake(upstream=moto.url) as running:
            yield running

    def settings(self, fake: SnsFake) -> SnsSettings:
        return settings_for(fake.url, sender="Relay", max_price="0.50")

    def arrange_failure(self, fake: SnsFake, to: str, kind: str) -> None:
        if kind == "recipient":
            reason = f"Invalid parameter: PhoneNumber Reason: {to} is not valid to publish to"
            fake.fail(to, 400, "InvalidParameter", reason)
        else:
            fake.fail(to, 500, "InternalError", "Internal Error")

    def mis_build(self, request: CapturedRequest) -> CapturedRequest:
        form = [(k, v) for k, v in parse_qsl(request.body.decode()) if k != "Message"]
        return replace(request, body=urlencode(form).encode())

    def validate(self, request: CapturedRequest) -> None:
        validate_query_request(SPEC, request)
        self.check_extensions(request)

    def check_extensions(self, request: CapturedRequest) -> None:
        # Stated in the members' documentation rather than in the shapes.
        form = form_of(request)
        targets = [name for name in ("TopicArn", "TargetArn", "PhoneNumber") if name in form]
        if len(targets) != 1:
            raise ContractError(f"exactly one of TopicArn, TargetArn, PhoneNumber; got {targets}")
        if "PhoneNumber" in form and not _E164.match(form["PhoneNumber"]):
            raise ContractError("PhoneNumber: use E.164 format")
        if "PhoneNumber" in form and len(form.get("Message", "")) > 1600:
            raise ContractError("an SMS Publish is at most 1,600 characters")
        for name, (data_type, value) in attributes_of(form).items():
            if data_type in ("String", "Number") and not value:
                raise ContractError(f"message attribute {name} has an empty value")

    def check_answer(self, request: CapturedRequest) -> None:
        assert request.answer is not None
        validate_publish_answer(SPEC, request.answer)

    async def test_sms_reaches_moto(self, fake: SnsFake, moto: Moto) -> None:
        """moto lists the sent SMS with its number, text and the id the adapter returned."""
        provider = SnsProvider("sns", self.settings(fake))
        try:
            result = await provider.send(self.send_request())
        finally:
            await provider.close()
        assert await moto.sms() == [
            {
                "message": "Contract test",
                "message_id": result.provider_message_id,
                "phone_number": self.recipient,
            }
        ]

    @pytest.mark.parametrize(
        ("field", "value", "complaint"),
        [
            ("Version", "2012-01-01", "Version must be"),
            ("PhoneNumbr", TO, "unknown parameters"),
            ("MessageAttributes.entry.9.Value.StringValue", "x", "unknown parameters"),
            ("PhoneNumber", "14155550123", "E.164"),
            ("MessageAttributes.entry.1.Value.DataType", None, "DataType is required"),
        ],
    )
    async def test_model_validation_catches_a_broken_field(
        self, fake: SnsFake, moto: Moto, field: str, value: str | None, complaint: str
    ) -> None:
        """A wrong version, unknown member, stray map entry, bad number or missing member is refused."""
        provider = SnsProvider("sns", self.settings(fake))
        try:
            await provider.send(self.send_request())
        finally:
            await provider.close()
        form = {k: v for k, v in form_of(fake.received[0]).items() if k != field}
        if value is not None:
            form[field] = value
        broken = replace(fake.received[0], body=urlencode(form).encode())
        with pytest.raises(ContractError, match=complaint):
            self.validate(broken)

    def test_unsigned_request_is_refused_by_the_model(self) -> None:
        """A Publish without SigV4 auth breaks the contract."""
        body = urlencode(
            {"Action": "Publish", "Version": "2010-03-31", "PhoneNumber": TO, "Message": "x"}
        )
        request = CapturedRequest(
            "POST", "/", {}, "application/x-www-form-urlencoded", body.encode()
        )
        with pytest.raises(ContractError, match="SigV4"):
            self.validate(request)


# -- the wire format --------------------------------------------------------------------------


async def test_publish_is_a_signed_form_post(front: SnsFake, sns: SnsProvider) -> None:
    """A send is one SigV4-signed form POST / with Action=Publish, PhoneNumber and Message."""
    await sns.send(message())
    (request,) = front.received
    assert (request.method, request.path) == ("POST", "/")
    assert request.content_type == "application/x-www-form-urlencoded"
    assert {k: request.fields[k] for k in ("Action", "Version", "PhoneNumber", "Message")} == {
        "Action": "Publish",
        "Version": "2010-03-31",
        "PhoneNumber": TO,
        "Message": "Your code is 123456",
    }
    authorization = request.headers["Authorization"]
    assert authorization.startswith(f"AWS4-HMAC-SHA256 Credential={ACCESS_KEY}/")
    assert f"/{REGION}/sns/aws4_request" in authorization
    assert "X-Amz-Security-Token" not in request.headers


@pytest.mark.parametrize(
    ("kind", "sms_type"),
    [("otp", "Transactional"), ("transactional", "Transactional"), ("marketing", "Promotional")],
)
async def test_sms_type_follows_the_kind(
    front: SnsFake, sns: SnsProvider, kind: str, sms_type: str
) -> None:
    """OTP and transactional messages are Transactional, marketing ones Promotional."""
    await sns.send(message(kind=kind))
    assert attributes_of(front.received[0].fields)["AWS.SNS.SMS.SMSType"] == ("String", sms_type)


async def test_no_sender_or_price_attributes_unless_configured(
    front: SnsFake, sns: SnsProvider
) -> None:
    """Without a sender or max_price only the SMS type is sent."""
    await sns.send(message())
    assert list(attributes_of(front.received[0].fields)) == ["AWS.SNS.SMS.SMSType"]


async def test_sender_id_and_max_price_when_configured(front: SnsFake) -> None:
    """A configured alphanumeric sender is the SenderID; max_price is a Number attribute."""
    await send_with(settings_for(front.url, sender="ACME", max_price="0.25"), message())
    attributes = attributes_of(front.received[0].fields)
    assert attributes["AWS.SNS.SMS.SenderID"] == ("String", "ACME")
    assert attributes["AWS.SNS.SMS.MaxPrice"] == ("Number", "0.25")


async def test_request_sender_overrides_and_a_number_is_an_origination_number(
    front: SnsFake, sns: SnsProvider
) -> None:
    """A request's own sender wins; an E.164 sender goes out as the origination number."""
    await sns.send(message(**{"from": "+14155550199"}))
    attributes = attributes_of(front.received[0].fields)
    assert attributes["AWS.MM.SMS.OriginationNumber"] == ("String", "+14155550199")
    assert "AWS.SNS.SMS.SenderID" not in attributes


async def test_session_token_is_sent(front: SnsFake) -> None:
    """Temporary credentials send their session token as X-Amz-Security-Token."""
    await send_with(settings_for(front.url, session_token="FwoGZXIvYXdzEXAMPLE"), message())
    assert front.received[0].headers["X-Amz-Security-Token"] == "FwoGZXIvYXdzEXAMPLE"


async def test_non_e164_recipient_is_refused_before_sending(
    front: SnsFake, sns: SnsProvider, moto: Moto
) -> None:
    """moto would take a number without '+'; the adapter refuses it and sends nothing."""
    request = message().model_copy(update={"to": "14155550123"})
    with pytest.raises(RecipientRejected) as caught:
        await sns.send(request)
    assert caught.value.code == "not-e164"
    assert front.received == [] and await moto.sms() == []


# -- signatures, checked by moto --------------------------------------------------------------


async def test_signature_is_accepted_by_a_strict_moto(
    strict_moto: tuple[Moto, dict[str, str]],
) -> None:
    """A moto that verifies SigV4 and IAM takes the adapter's Publish."""
    moto, key = strict_moto
    provider = SnsProvider("sns", settings_for(moto.url, **key))
    try:
        result = await provider.send(message())
    finally:
        await provider.close()
    assert result.provider_message_id in [s["message_id"] for s in await moto.sms()]


@pytest.mark.parametrize(
    ("override", "code"),
    [
        ({"secret_access_key": "not-the-secret-key-0123456789"}, "SignatureDoesNotMatch"),
        ({"access_key_id": "AKIAUNKNOWNKEY000000"}, "InvalidClientTokenId"),
    ],
)
async def test_bad_credentials_are_authentication_failed(
    strict_moto: tuple[Moto, dict[str, str]], override: dict[str, str], code: str
) -> None:
    """moto's own answer to a wrong secret or an unknown key raises AuthenticationFailed."""
    moto, key = strict_moto
    error = await send_error_with(
        settings_for(moto.url, **{**key, **override}), message(), AuthenticationFailed
    )
    assert error.code == code
    assert "not-the-secret-key" not in str(error)


# -- errors -----------------------------------------------------------------------------------


async def _error_for(
    front: SnsFake, sns: SnsProvider, status: int, code: str, text: str = "", **kwargs: Any
) -> ProviderError:
    front.fail(OTHER, status, code, text, **kwargs)
    return await send_error(sns, message(OTHER), ProviderError)


@pytest.mark.parametrize(
    ("status", "code", "text", "expected"),
    [
        (
            400,
            "InvalidParameter",
            "Invalid parameter: PhoneNumber Reason: bad number",
            RecipientRejected,
        ),
        (400, "InvalidParameter", "Phone number does not meet the E164 format", RecipientRejected),
        (400, "InvalidParameter", "Invalid parameter: Message too long", PermanentProviderError),
        (400, "ParameterValueInvalid", "Invalid parameter: PhoneNumber", RecipientRejected),
        (400, "OptedOut", "Phone number is opted out", RecipientRejected),
        (400, "ValidationException", "1 validation error", PermanentProviderError),
        (
            403,
            "AuthorizationError",
            "User is not authorized to perform: SNS:Publish",
            AuthenticationFailed,
        ),
        (
            403,
            "InvalidClientTokenId",
            "The security token included in the request is invalid.",
            AuthenticationFailed,
        ),
        (
            403,
            "SignatureDoesNotMatch",
            "The request signature we calculated does not match",
            AuthenticationFailed,
        ),
        (
            403,
            "ExpiredToken",
            "The security token included in the request is expired",
            AuthenticationFailed,
        ),
        (400, "Throttling", "Rate exceeded", RateLimited),
        (400, "ThrottlingException", "Rate exceeded", RateLimited),
        (500, "InternalError", "Internal Error", TransientProviderError),
        (503, "ServiceUnavailable", "Service Unavailable", TransientProviderError),
        (400, "SomethingNew", "?", PermanentProviderError),
        (403, "SomethingNew", "?", AuthenticationFailed),
        (502, "SomethingNew", "?", TransientProviderError),
    ],
)
async def test_error_codes_map_onto_the_error_tree(
    front: SnsFake,
    sns: SnsProvider,
    status: int,
    code: str,
    text: str,
    expected: type[ProviderError],
) -> None:
    """Each code of the table raises its class; unknown codes fall back on the HTTP status."""
    error = await _error_for(front, sns, status, code, text)
    assert_table_class(error, expected, code)


async def test_throttled_carries_retry_after(front: SnsFake, sns: SnsProvider) -> None:
    """SNS's 429 Throttled raises RateLimited carrying Retry-After in seconds."""
    error = await _error_for(front, sns, 429, "Throttled", "Rate exceeded", retry_after=3)
    assert isinstance(error, RateLimited)
    assert error.retry_after == 3.0


async def test_moto_refusing_a_malformed_number_is_recipient_rejected(moto: Moto) -> None:
    """moto's own InvalidParameter for a number it cannot parse raises RecipientRejected."""
    provider = _LaxSns("sns", settings_for(moto.url))
    try:
        with pytest.raises(RecipientRejected) as caught:
            await provider.send(message().model_copy(update={"to": "+1415555012x"}))
    finally:
        await provider.close()
    assert caught.value.code == "InvalidParameter"


class _LaxSns(SnsProvider):
    """An adapter without the E.164 check, to let moto judge a malformed number."""

    def check_recipient(self, request: SendRequest) -> None:
        pass


async def test_answer_without_message_id_is_unconfirmed(front: SnsFake, sns: SnsProvider) -> None:
    """A 2xx without a MessageId is an unconfirmed send: SNS may have taken the message."""
    error = await _error_for(front, sns, 200, "Odd")
    assert type(error) is UnconfirmedSend
    assert error.code == "bad-response"


async def test_error_text_masks_the_number(front: SnsFake, sns: SnsProvider) -> None:
    """An AWS message quoting the number carries it masked."""
    text = f"Invalid parameter: PhoneNumber Reason: {OTHER} is not valid to publish to"
    error = await _error_for(front, sns, 400, "InvalidParameter", text)
    assert OTHER not in str(error)
    assert OTHER[-2:] in str(error)


async def test_refused_connection_is_transient() -> None:
    """A refused connection raises TransientProviderError with code "network"."""
    async with SnsFake() as gone:
        url = gone.url
    await assert_refused_connection_is_transient(settings_for(url))


# -- settings and receipts --------------------------------------------------------------------


def test_default_endpoint_is_the_regional_one() -> None:
    """Without base_url the adapter calls https://sns.<region>.amazonaws.com/."""
    provider = SnsProvider("sns", settings_for("", region="ap-southeast-2"))
    assert provider.endpoint == "https://sns.ap-southeast-2.amazonaws.com/"


def test_settings_refuse_a_malformed_region() -> None:
    """A region that is not like eu-west-1 is refused at start-up."""
    with pytest.raises(ValidationError, match="region"):
        settings_for("", region="Ireland")


def test_settings_repr_hides_the_secrets() -> None:
    """The secret key and the session token do not show in the settings' repr."""
    config = settings_for("", session_token="FwoGZXIvYXdzEXAMPLE")
    assert SECRET_KEY not in repr(config) and "FwoGZXIvYXdzEXAMPLE" not in repr(config)


def test_webhooks_are_refused() -> None:
    """SNS reports delivery to CloudWatch Logs, so every webhook is refused."""
    provider = SnsProvider("sns", settings_for(""))
    webhook = Webhook("POST", "https://relay.example.com/v1/receipts/sns", {}, b"{}")
    with pytest.raises(BadSignature):
        provider.verify_receipt(webhook, now=datetime.now(UTC))
