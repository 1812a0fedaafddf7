"""Sinch: the SMS REST API ("XMS"), ``POST /xms/v1/{service_plan_id}/batches``.

One JSON batch per message, one recipient per batch, ``Authorization: Bearer <token>``.
The host depends on the account's region (``https://{region}.sms.api.sinch.com``, region
one of us, eu, au, br, ca); ``base_url`` overrides it. Our request id travels as the
batch's ``client_reference`` and comes back in every delivery report. A 201 answer
carries the batch ``id``; Sinch reports no part count when it takes a batch. Errors
are HTTP 400/403 with ``{"code", "text"}``; Sinch's codes map onto the error tree like
this (meanings from Sinch's "HTTP status codes" reference):

================================  ========================================  ======================
code                              meaning                                   class
================================  ========================================  ======================
syntax_invalid_json               the body is not valid JSON (our bug)      PermanentProviderError
syntax_invalid_parameter_format   a field is malformed                      PermanentProviderError
… naming parameter ``to[n]``      the number is malformed                   RecipientRejected
syntax_constraint_violation       a required field missing or too long      PermanentProviderError
illegal_number_type               number type not allowed in the region     RecipientRejected
unprovisioned_region              account not provisioned for the region    PermanentProviderError
missing_callback_url              receipts asked for without callback URL   PermanentProviderError
unknown_group, unknown_campaign   a referenced group/campaign is unknown    PermanentProviderError
blocked_account                   account blocked (often: out of credit)    AuthenticationFailed
unauthorized, forbidden           wrong token or service plan               AuthenticationFailed
================================  ========================================  ======================

A code not in the table falls back on the HTTP status: 429 → ``RateLimited`` (with
``Retry-After``), 5xx → ``TransientProviderError``, 401 → ``AuthenticationFailed``, any
other 4xx (403 included: Sinch uses it for business rules, not only for credentials)
→ ``PermanentProviderError``.

Receipts: with ``callback_url`` set, each batch asks for ``per_recipient`` delivery
reports at that URL. Sinch signs callbacks with the webhook secret: headers
``x-sinch-webhook-signature`` (base64 HMAC), ``-timestamp`` (Unix seconds), ``-nonce``
and ``-algorithm`` (``HmacSHA256``, the only one accepted, as in Sinch's own SMS SDK);
the signed text is the raw body, ".", the nonce, ".", the timestamp, in UTF-8.
A report older (or newer) than ``receipt_window`` seconds is refused; a replay within
the window is refused by the API's digest of the signed text (body, nonce, timestamp).
A report is under 2 KB; over 64 KB it is refused before the signature is checked. Statuses
normalise like this; the detailed ``code`` is kept for failures:

=========================  ===========  =====================================================
status                     receipt      why
=========================  ===========  =====================================================
Delivered                  delivered
Queued, Dispatched         pending      intermediate
Unknown                    pending      final, but says nothing about the handset
Failed, Expired, Deleted   undelivered  the carrier had it and could not deliver it
Aborted, Rejected          failed       it never left Sinch, or the SMSC refused it
=========================  ===========  =====================================================
"""

from __future__ import annotations

import re
from datetime import datetime
from typing import Any, ClassVar, Literal, NoReturn

from pydantic import Field, SecretStr

from smsrelay.errors import (
    AuthenticationFailed,
    BadSignature,
    PermanentProviderError,
    ProviderError,
    RecipientRejected,
    UnconfirmedSend,
)
from smsrelay.models import Receipt, ReceiptStatus, SendRequest, SendResult
from smsrelay.providers.base import (
    HttpProvider,
    ProviderSettings,
    Webhook,
    dicts,
    iso_datetime,
    json_int,
    json_object,
    scrub,
    secret,
    str_or_none,
)
from smsrelay.providers.webhooks import (
    canonical,
    check_timestamp,
    hmac_b64,
    report_object,
    same,
)

ERRORS: dict[str, type[ProviderError]] = {
    "syntax_invalid_json": PermanentProviderError,
    "syntax_invalid_parameter_format": PermanentProviderError,
    "syntax_constraint_violation": PermanentProviderError,
    "illegal_number_type": RecipientRejected,
    "unprovisioned_region": PermanentProviderError,
    "missing_callback_url": PermanentProviderError,
    "unknown_group": PermanentProviderError,
    "unknown_campaign": PermanentProviderError,
    "blocked_account": AuthenticationFailed,
    "unauthorized": AuthenticationFailed,
    "forbidden": AuthenticationFailed,
}
"""Sinch error code → the class raised for it (the table above)."""

RECEIPT_STATUSES: dict[str, ReceiptStatus] = {
    "Delivered": ReceiptStatus.DELIVERED,
    "Queued": ReceiptStatus.PENDING,
    "Dispatched": ReceiptStatus.PENDING,
    "Unknown": ReceiptStatus.PENDING,
    "Failed": ReceiptStatus.UNDELIVERED,
    "Expired": ReceiptStatus.UNDELIVERED,
    "Deleted": ReceiptStatus.UNDELIVERED,
    "Aborted": ReceiptStatus.FAILED,
    "Rejected": ReceiptStatus.FAILED,
}
"""Sinch delivery report status → the normalised receipt status (the table above)."""

_BY_STATUS: dict[int, type[ProviderError]] = {401: AuthenticationFailed}
_SIGNATURE = "x-sinch-webhook-signature"
_FAILED = (ReceiptStatus.UNDELIVERED, ReceiptStatus.FAILED)
# Sinch's texts quote the numbers they refuse, with or without "+".
_TO_PARAMETER = re.compile(r"parameter '?to\[")


class SinchSettings(ProviderSettings):
    """Sinch service plan, token, region, and receipts.

    ``sender`` becomes the batch's ``from`` (a request's own sender wins); without one
    Sinch uses the plan's default originator. ``callback_url`` turns on per-recipient
    delivery reports; ``webhook_secret`` verifies their signatures.
    """

    type: Literal["sinch"] = "sinch"
    service_plan_id: str = Field(pattern=r"^[A-Za-z0-9_-]{1,64}$")
    api_token: SecretStr
    region: Literal["us", "eu", "au", "br", "ca"] = "us"
    callback_url: str | None = Field(default=None, max_length=2048)
    webhook_secret: SecretStr | None = None
    receipt_window: float = Field(default=300.0, gt=0)


class SinchProvider(HttpProvider):
    """The ``sinch`` provider."""

    type_name: ClassVar[str] = "sinch"
    settings_class: ClassVar[type[ProviderSettings]] = SinchSettings
    default_base_url: ClassVar[str] = "https://us.sms.api.sinch.com"

    # One recipient per batch: a report is under 2 KB.
    max_receipt_bytes: ClassVar[int] = 64 * 1024

    def __init__(self, name: str, settings: ProviderSettings) -> None:
        super().__init__(name, settings)
        assert isinstance(settings, SinchSettings)
        self.config = settings
        if not settings.base_url:
            self.base_url = f"https://{settings.region}.sms.api.sinch.com"
        self.batches_url = f"{self.base_url}/xms/v1/{settings.service_plan_id}/batches"
        self._headers = {"Authorization": f"Bearer {secret(settings.api_token)}"}

    async def send(self, request: SendRequest) -> SendResult:
        status, headers, body = await self.request(
            "POST", self.batches_url, json=self.batch(request), headers=self._headers
        )
        if not 200 <= status < 300:
            self._raise_error(status, headers, body)
        return self._result(body)

    def batch(self, request: SendRequest) -> dict[str, Any]:
        """The JSON batch of the send call for ``request``."""
        batch: dict[str, Any] = {
            "to": [request.to],
            "body": request.body,
            "client_reference": request.id,
        }
        sender = request.sender or self.config.sender
        if sender:
            batch["from"] = sender
        if self.config.callback_url:
            batch["delivery_report"] = "per_recipient"
            batch["callback_url"] = self.config.callback_url
        return batch

    def _result(self, body: bytes) -> SendResult:
        batch_id = json_object(body).get("id")
        if not isinstance(batch_id, str) or not batch_id:
            # Sinch took the batch; a retry could send it twice.
            raise UnconfirmedSend(self.name, "bad-response", "201 without a batch id")
        return SendResult(provider_message_id=batch_id)

    def _raise_error(self, status: int, headers: dict[str, str], body: bytes) -> NoReturn:
        data = json_object(body)
        code = str(data.get("code") or f"http-{status}")
        text = str(data.get("text") or f"HTTP {status}")
        error_class = ERRORS.get(code)
        if code == "syntax_invalid_parameter_format" and _TO_PARAMETER.search(text):
            error_class = RecipientRejected
        self.raise_for_code(error_class, status, headers, code, self._redact(text), _BY_STATUS)

    def _redact(self, message: str) -> str:
        return scrub(message, self.config.api_token)

    # -- receipts -----------------------------------------------------------------------

    def verify_receipt(self, webhook: Webhook, now: datetime) -> None:
        key = secret(self.config.webhook_secret)
        if not key:
            raise BadSignature("sinch receipts need webhook_secret")
        signature = webhook.header(_SIGNATURE)
        nonce = webhook.header(f"{_SIGNATURE}-nonce")
        timestamp = webhook.header(f"{_SIGNATURE}-timestamp")
        algorithm = webhook.header(f"{_SIGNATURE}-algorithm")
        if not (signature and nonce and timestamp and algorithm):
            raise BadSignature("sinch signature headers missing")
        if algorithm != "HmacSHA256":
            # The only algorithm Sinch's SMS callbacks use (and its SDKs accept).
            raise BadSignature("sinch signature algorithm not supported")
        expected = sign(key, webhook.body, nonce, timestamp)
        if not same(signature, expected):
            raise BadSignature("sinch signature does not verify")
        check_timestamp(timestamp, now, self.config.receipt_window, "sinch receipt")

    def replay_key(self, webhook: Webhook) -> bytes:
        # What the HMAC covers: the body, the nonce and the timestamp.
        nonce = webhook.header(f"{_SIGNATURE}-nonce") or ""
        timestamp = webhook.header(f"{_SIGNATURE}-timestamp") or ""
        return canonical(webhook.body, nonce, timestamp)

    def parse_receipts(self, webhook: Webhook) -> list[Receipt]:
        data = report_object(webhook.body, "sinch callback")
        if data.get("type") == "recipient_delivery_report_sms":
            return [_recipient_receipt(data)]
        if data.get("type") == "delivery_report_sms":
            # We send one recipient per batch, so a summary report is about our message too.
            statuses = data.get("statuses")
            return [_summary_receipt(data, s) for s in dicts(statuses)]
        return []  # inbound messages (mo_text…) are not receipts


def sign(key: str, body: bytes, nonce: str, timestamp: str) -> str:
    """Sinch's callback signature: base64 HMAC-SHA256 of ``body.nonce.timestamp``."""
    signed = body + f".{nonce}.{timestamp}".encode()
    return hmac_b64(key.encode(), signed)


def _recipient_receipt(data: dict[str, Any]) -> Receipt:
    parts = json_int(data.get("number_of_message_parts"))
    return _receipt(data, data, parts=parts, at=iso_datetime(data.get("at")))


def _summary_receipt(data: dict[str, Any], entry: dict[str, Any]) -> Receipt:
    return _receipt(data, entry)


def _receipt(
    report: dict[str, Any],
    entry: dict[str, Any],
    parts: int | None = None,
    at: datetime | None = None,
) -> Receipt:
    # ``entry`` holds the status and code: the report itself, or one of a summary's statuses.
    provider_status = str(entry.get("status") or "")
    status = RECEIPT_STATUSES.get(provider_status, ReceiptStatus.PENDING)
    return Receipt(
        provider_message_id=str_or_none(report.get("batch_id")),
        message_id=str_or_none(report.get("client_reference")),
        status=status,
        provider_status=provider_status,
        error_code=str_or_none(entry.get("code")) if status in _FAILED else None,
        parts=parts,
        at=at,
    )
