"""MessageBird (Bird): the SMS Messaging API (``POST /messages``) and its signed status reports.

One JSON POST per message ``{recipients, originator, body, reference, datacoding: auto,
reportUrl?}`` with ``Authorization: AccessKey <key>``; our request id is the
``reference`` (MessageBird sends status reports only for messages that have one). A 201
answers the Message object: its ``id`` is the provider message id and the recipient's
``messagePartCount`` the segment count. A refusal answers ``{"errors": [{code,
description, parameter}]}``; the codes map onto the error tree like this (MessageBird's
API error list):

====  ===========================================================  ======================
code  meaning                                                      class
====  ===========================================================  ======================
2     request not allowed (incorrect access_key)                   AuthenticationFailed
9     missing params; with parameter ``recipients``: no (correct)  PermanentProviderError;
      recipients found                                             RecipientRejected
10    invalid params; with parameter ``recipients``: the number    PermanentProviderError;
                                                                   RecipientRejected
20    not found                                                    PermanentProviderError
21    bad request                                                  PermanentProviderError
25    not enough balance                                           PermanentProviderError
98    API not found (MessageBird's routing)                        TransientProviderError
99    internal error                                               TransientProviderError
====  ===========================================================  ======================

When several errors are listed, an ``AuthenticationFailed`` one wins, else the first.
An unknown code, or a body without errors, falls back on the HTTP status: 429 →
``RateLimited`` (with ``Retry-After``), 5xx → transient, 401/403 →
``AuthenticationFailed``, any other → permanent.

Status reports reach ``reportUrl`` (or the dashboard's URL) as a GET whose query holds
``id``, ``reference``, ``recipient``, ``status`` (scheduled, sent, buffered, delivered,
expired, delivery_failed), ``statusReason``, ``statusErrorCode``, ``statusDatetime`` and
``messagePartCount``. They carry ``MessageBird-Signature-JWT``: a JWT signed HS256 (or
HS384/HS512) with the signing key, issuer ``MessageBird``, ``nbf``/``exp`` bounding its
validity, ``url_hash`` the hex sha256 of the full URL called and, when there is a body,
``payload_hash`` the hex sha256 of it. A report is refused when the token does not
verify, when a hash differs, or (``StaleReceipt``) when now lies outside nbf..exp
(1 s leeway, as MessageBird's SDKs allow). The replay key is what the hashes cover, the
URL and the body, not the token: a report sent again under a fresh token is the same
report. A report has about fifteen fields: over 16 KB or 64 fields it is refused before
the token is checked.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any, ClassVar, Literal, NoReturn

import jwt
from pydantic import Field, SecretStr

from smsrelay.errors import (
    AuthenticationFailed,
    BadSignature,
    PermanentProviderError,
    ProviderError,
    RecipientRejected,
    StaleReceipt,
    TransientProviderError,
    UnconfirmedSend,
)
from smsrelay.models import Receipt, ReceiptStatus, SendRequest, SendResult
from smsrelay.providers.base import (
    HttpProvider,
    ProviderSettings,
    Webhook,
    dicts,
    json_object,
    scrub,
    secret,
    text_int,
)
from smsrelay.providers.webhooks import canonical, form_params, query_params, same

ERRORS: dict[str, type[ProviderError]] = {
    "2": AuthenticationFailed,
    "9": PermanentProviderError,
    "10": PermanentProviderError,
    "20": PermanentProviderError,
    "21": PermanentProviderError,
    "25": PermanentProviderError,
    "98": TransientProviderError,
    "99": TransientProviderError,
}
"""MessageBird error code → the class raised for it (the table above)."""

RECIPIENT_CODES = frozenset({"9", "10"})
"""Codes that reject the recipient when their ``parameter`` is ``recipients``."""

STATUSES: dict[str, ReceiptStatus] = {
    "delivered": ReceiptStatus.DELIVERED,
    "delivery_failed": ReceiptStatus.UNDELIVERED,
    "expired": ReceiptStatus.UNDELIVERED,
    "sent": ReceiptStatus.PENDING,
    "buffered": ReceiptStatus.PENDING,
    "scheduled": ReceiptStatus.PENDING,
}
"""A status report's ``status`` → the normalised receipt status."""

ALGORITHMS = ["HS256", "HS384", "HS512"]
"""The only JWT algorithms accepted (never ``none``, never a public-key one)."""

LEEWAY = 1.0
"""Seconds of clock skew allowed around nbf and exp."""

_BY_STATUS: dict[int, type[ProviderError]] = {
    401: AuthenticationFailed,
    403: AuthenticationFailed,
}


class MessageBirdSettings(ProviderSettings):
    """MessageBird credentials, originator, report URL and signing key.

    ``sender`` (a number, or up to 11 alphanumeric characters) becomes ``originator``;
    a request's own sender wins. ``report_url`` is sent as ``reportUrl`` with every
    message when set. ``signing_key`` is the dashboard's signing key (not the access
    key); without it every status report is refused.
    """

    type: Literal["messagebird"] = "messagebird"
    access_key: SecretStr
    sender: str = Field(min_length=1, max_length=17)
    report_url: str | None = None
    signing_key: SecretStr | None = None


class MessageBirdProvider(HttpProvider):
    """The ``messagebird`` provider."""

    type_name: ClassVar[str] = "messagebird"
    settings_class: ClassVar[type[ProviderSettings]] = MessageBirdSettings
    default_base_url: ClassVar[str] = "https://rest.messagebird.com"
    max_receipt_bytes: ClassVar[int] = 16 * 1024
    max_receipt_params: ClassVar[int] = 64

    def __init__(self, name: str, settings: ProviderSettings) -> None:
        super().__init__(name, settings)
        assert isinstance(settings, MessageBirdSettings)
        self.config = settings
        self.messages_url = f"{self.base_url}/messages"
        self._headers = {"Authorization": f"AccessKey {secret(settings.access_key)}"}

    async def send(self, request: SendRequest) -> SendResult:
        status, headers, body = await self.request(
            "POST", self.messages_url, json=self.payload(request), headers=self._headers
        )
        if not 200 <= status < 300:
            self._raise_error(status, headers, body)
        return self._result(json_object(body))

    def payload(self, request: SendRequest) -> dict[str, Any]:
        """The JSON body of the create-message call for ``request``."""
        fields: dict[str, Any] = {
            # MSISDNs in international format without the "+", as MessageBird lists them.
            "recipients": [request.to.removeprefix("+")],
            "originator": request.sender or self.config.sender,
            "body": request.body,
            "reference": request.id,
            "datacoding": "auto",
        }
        if self.config.report_url:
            fields["reportUrl"] = self.config.report_url
        return fields

    def _result(self, data: dict[str, Any]) -> SendResult:
        message_id = data.get("id")
        if not isinstance(message_id, str) or not message_id:
            # MessageBird took the message; a retry could send it twice.
            raise UnconfirmedSend(self.name, "bad-response", "2xx without a message id")
        items = (data.get("recipients") or {}).get("items") or [{}]
        parts = items[0].get("messagePartCount") if isinstance(items[0], dict) else None
        return SendResult(provider_message_id=message_id, segments=text_int(parts))

    def _raise_error(self, status: int, headers: dict[str, str], body: bytes) -> NoReturn:
        error = _decisive(json_object(body).get("errors"))
        code = str(error.get("code") or f"http-{status}")
        message = self._redact(str(error.get("description") or f"HTTP {status}"))
        error_class = ERRORS.get(code)
        if code in RECIPIENT_CODES and error.get("parameter") == "recipients":
            error_class = RecipientRejected  # both codes are in the table
        self.raise_for_code(error_class, status, headers, code, message, _BY_STATUS)

    def _redact(self, message: str) -> str:
        return scrub(message, self.config.access_key)

    # -- receipts -------------------------------------------------------------------------

    def verify_receipt(self, webhook: Webhook, now: datetime) -> None:
        token = webhook.header("MessageBird-Signature-JWT")
        if not token:
            raise BadSignature("messagebird report without MessageBird-Signature-JWT")
        claims = self._claims(token)
        _check_window(claims, now.timestamp())
        if not _same_hash(claims.get("url_hash"), webhook.url.encode()):
            raise BadSignature("messagebird report url_hash does not match the URL called")
        expected = claims.get("payload_hash")
        if bool(webhook.body) != bool(expected):
            raise BadSignature("messagebird report payload_hash and body disagree")
        if webhook.body and not _same_hash(expected, webhook.body):
            raise BadSignature("messagebird report payload_hash does not match the body")

    def _claims(self, token: str) -> dict[str, Any]:
        key = secret(self.config.signing_key)
        if not key:
            raise BadSignature("messagebird: no signing_key configured, reports are refused")
        try:
            claims: dict[str, Any] = jwt.decode(
                token,
                key,
                algorithms=ALGORITHMS,
                issuer="MessageBird",
                # nbf/exp are checked against the ``now`` we are given, not the clock.
                options={
                    "require": ["iss", "nbf", "exp", "url_hash"],
                    "verify_exp": False,
                    "verify_nbf": False,
                    "verify_iat": False,
                },
            )
        except jwt.InvalidTokenError as exc:
            raise BadSignature(f"messagebird report token refused: {exc}") from None
        return claims

    def replay_key(self, webhook: Webhook) -> bytes:
        return canonical(webhook.url, webhook.body)

    def parse_receipts(self, webhook: Webhook) -> list[Receipt]:
        params = report_params(webhook)
        status = params.get("status")
        if not status or not params.get("id"):
            return []
        parts = text_int(params.get("messagePartCount"))
        receipt = Receipt(
            provider_message_id=params["id"],
            message_id=params.get("reference") or None,
            status=STATUSES.get(status, ReceiptStatus.PENDING),
            provider_status=status,
            error_code=params.get("statusErrorCode") or None,
            parts=parts,
            at=_time(params.get("statusDatetime")),
        )
        return [receipt]


def report_params(webhook: Webhook) -> dict[str, str]:
    """A status report's parameters: the query, or a form body if MessageBird POSTs one."""
    if webhook.body and "form" in (webhook.header("content-type") or ""):
        return form_params(webhook.body)
    return query_params(webhook)


def _decisive(listed: object) -> Mapping[str, Any]:
    errors = dicts(listed)
    for error in errors:
        if ERRORS.get(str(error.get("code"))) is AuthenticationFailed:
            return error
    return errors[0] if errors else {}


def _check_window(claims: Mapping[str, Any], now: float) -> None:
    not_before, expires = claims.get("nbf"), claims.get("exp")
    if not isinstance(not_before, int | float) or not isinstance(expires, int | float):
        raise BadSignature("messagebird report token has no numeric nbf/exp")
    if now < not_before - LEEWAY:
        raise StaleReceipt(f"messagebird report is not valid for another {not_before - now:.0f}s")
    if now > expires + LEEWAY:
        raise StaleReceipt(f"messagebird report expired {now - expires:.0f}s ago")


def _same_hash(claimed: object, data: bytes) -> bool:
    expected = hashlib.sha256(data).hexdigest()
    return isinstance(claimed, str) and same(claimed, expected)


def _time(value: str | None) -> datetime | None:
    try:
        found = datetime.fromisoformat(value or "")
    except ValueError:
        return None
    return found if found.tzinfo else found.replace(tzinfo=UTC)
