"""Telnyx: the Messaging API v2, ``POST /v2/messages``.

One JSON message per send, ``Authorization: Bearer <API key>``, from a number (``from``)
or a messaging profile's pool (``messaging_profile_id``). ``base_url`` is the API's
server URL including its version (``https://api.telnyx.com/v2``). A 200 answer carries
``data.id`` and ``data.parts``. Telnyx's send call has no client reference field (the
request schema has none, and ``tags`` exist only on the answer), so our request id is
not sent: receipts are matched by the message ``id`` alone.

Errors are 4xx/5xx with ``{"errors": [{"code", "title", "detail"}]}``; the first error's
code maps onto the error tree like this (meanings from Telnyx's API and messaging error
code references; the 40xxx delivery codes also arrive in receipts, read with this table):

=====  ========================================================  ======================
code   meaning                                                   class
=====  ========================================================  ======================
10001  inactive phone number (Telnyx does not say which one)     PermanentProviderError
10002  invalid phone number                                      RecipientRejected
10004  missing required parameter (our bug)                      PermanentProviderError
10007  unexpected error                                          TransientProviderError
10008  request timeout                                           TransientProviderError
10009  authentication failed: wrong or missing API key           AuthenticationFailed
10010  authorization failed: the key may not do this             AuthenticationFailed
10011  too many requests                                         RateLimited
10015  bad request (our bug)                                     PermanentProviderError
20002  API key revoked                                           AuthenticationFailed
20012  account inactive (possibly out of funds)                  AuthenticationFailed
20013  account blocked                                           AuthenticationFailed
20100  insufficient funds                                        AuthenticationFailed
40001  not routable: a landline or non-routable number           RecipientRejected
40002  blocked as spam by the carrier, temporarily               TransientProviderError
40003  blocked as spam by the carrier, permanently               PermanentProviderError
40004  rejected by the destination carrier, retry later          TransientProviderError
40005  expired during delivery                                   PermanentProviderError
40006  recipient's carrier unavailable                           TransientProviderError
40008  undeliverable: the carrier did not accept it              RecipientRejected
40009  invalid message body                                      PermanentProviderError
40010  unregistered 10DLC traffic                                PermanentProviderError
40011  the carrier's rate limit                                  RateLimited
40012  invalid destination number                                RecipientRejected
40013  invalid source number                                     PermanentProviderError
40014  expired in Telnyx's queue, never sent                     TransientProviderError
40015  blocked as spam by Telnyx                                 PermanentProviderError
40016  T-Mobile 10DLC daily limit reached                        RateLimited
40018  AT&T 10DLC parts-per-minute limit reached                 RateLimited
40100  'from' number not messaging-enabled                       PermanentProviderError
40300  blocked: the recipient replied STOP                       RecipientRejected
40301  message type not supported by the 'to' address            RecipientRejected
40305  invalid 'from' address                                    PermanentProviderError
40306  alphanumeric sender not configured                        PermanentProviderError
40309  destination region not enabled for the profile            PermanentProviderError
40310  invalid 'to' address                                      RecipientRejected
40311  invalid messaging profile secret                          AuthenticationFailed
40312  messaging profile disabled                                PermanentProviderError
40314  messaging disabled on the account                         AuthenticationFailed
40318  message queue full                                        RateLimited
40319  message type incompatible with the 'to' address           RecipientRejected
40321  no usable numbers on the messaging profile                PermanentProviderError
40322  blocked due to content                                    PermanentProviderError
=====  ========================================================  ======================

A code not in the table falls back on the HTTP status: 429 → ``RateLimited`` (with
``Retry-After``), 5xx → ``TransientProviderError``, 401/403 → ``AuthenticationFailed``,
any other 4xx → ``PermanentProviderError``. The code decides before the status does:
Telnyx answers a STOP block (40300) with 403, which is about the recipient, not us.

Receipts: Telnyx signs webhooks with Ed25519. ``telnyx-signature-ed25519`` is the base64
signature of ``f"{telnyx-timestamp}|{raw body}"``, checked with the account's public key
(``public_key``, base64, from the Mission Control portal); a timestamp outside
``receipt_window`` seconds is refused, and a replay within it by the API's digest of
the signed text (timestamp and body: a signature re-encoded with other unused base64
bits is the same webhook). A webhook over 64 KB (an event with a long text is under
16 KB) is refused before the signature is checked.
``message.sent`` and ``message.finalized`` events carry ``payload.to[].status``,
normalised like this (``payload.errors[0].code`` is kept for failures, ``payload.parts``
as the part count):

=========================================  ===========  ======================================
status                                     receipt      why
=========================================  ===========  ======================================
delivered                                  delivered
queued, sending, sent                      pending      intermediate
delivery_unconfirmed                       pending      final, but says nothing of the handset
delivery_failed, expired                   undelivered  the carrier could not deliver it
sending_failed                             failed       it never left Telnyx
=========================================  ===========  ======================================
"""

from __future__ import annotations

import base64
import binascii
from datetime import datetime
from typing import Any, ClassVar, Literal, NoReturn

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from pydantic import Field, SecretStr, field_validator, model_validator

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
from smsrelay.models import Receipt, ReceiptStatus, SendRequest, SendResult
from smsrelay.providers.base import (
    HttpProvider,
    ProviderSettings,
    Webhook,
    currency_code,
    dicts,
    iso_datetime,
    json_int,
    json_object,
    money,
    scrub,
    secret,
    str_or_none,
)
from smsrelay.providers.webhooks import check_timestamp, report_object

ERRORS: dict[str, type[ProviderError]] = {
    "10001": PermanentProviderError,
    "10002": RecipientRejected,
    "10004": PermanentProviderError,
    "10007": TransientProviderError,
    "10008": TransientProviderError,
    "10009": AuthenticationFailed,
    "10010": AuthenticationFailed,
    "10011": RateLimited,
    "10015": PermanentProviderError,
    "20002": AuthenticationFailed,
    "20012": AuthenticationFailed,
    "20013": AuthenticationFailed,
    "20100": AuthenticationFailed,
    "40001": RecipientRejected,
    "40002": TransientProviderError,
    "40003": PermanentProviderError,
    "40004": TransientProviderError,
    "40005": PermanentProviderError,
    "40006": TransientProviderError,
    "40008": RecipientRejected,
    "40009": PermanentProviderError,
    "40010": PermanentProviderError,
    "40011": RateLimited,
    "40012": RecipientRejected,
    "40013": PermanentProviderError,
    "40014": TransientProviderError,
    "40015": PermanentProviderError,
    "40016": RateLimited,
    "40018": RateLimited,
    "40100": PermanentProviderError,
    "40300": RecipientRejected,
    "40301": RecipientRejected,
    "40305": PermanentProviderError,
    "40306": PermanentProviderError,
    "40309": PermanentProviderError,
    "40310": RecipientRejected,
    "40311": AuthenticationFailed,
    "40312": PermanentProviderError,
    "40314": AuthenticationFailed,
    "40318": RateLimited,
    "40319": RecipientRejected,
    "40321": PermanentProviderError,
    "40322": PermanentProviderError,
}
"""Telnyx error code → the class raised for it (the table above)."""

RECEIPT_STATUSES: dict[str, ReceiptStatus] = {
    "delivered": ReceiptStatus.DELIVERED,
    "queued": ReceiptStatus.PENDING,
    "sending": ReceiptStatus.PENDING,
    "sent": ReceiptStatus.PENDING,
    "delivery_unconfirmed": ReceiptStatus.PENDING,
    "delivery_failed": ReceiptStatus.UNDELIVERED,
    "expired": ReceiptStatus.UNDELIVERED,
    "sending_failed": ReceiptStatus.FAILED,
}
"""Telnyx recipient status → the normalised receipt status (the table above)."""

_BY_STATUS: dict[int, type[ProviderError]] = {
    401: AuthenticationFailed,
    403: AuthenticationFailed,
}
_EVENTS = ("message.sent", "message.finalized")
_FAILED = (ReceiptStatus.UNDELIVERED, ReceiptStatus.FAILED)


class TelnyxSettings(ProviderSettings):
    """Telnyx API key, sender, webhooks and the key that checks them.

    One of ``sender`` (``from``; a request's own sender wins) and
    ``messaging_profile_id`` is required. ``webhook_url`` (and its failover) go out with
    every message; ``use_profile_webhooks`` is sent only when set. ``public_key`` (base64
    Ed25519) verifies receipts; without it every receipt is refused.
    """

    type: Literal["telnyx"] = "telnyx"
    api_key: SecretStr
    messaging_profile_id: str | None = None
    webhook_url: str | None = None
    webhook_failover_url: str | None = None
    use_profile_webhooks: bool | None = None
    public_key: str | None = None
    receipt_window: float = Field(default=300.0, gt=0)

    @field_validator("public_key")
    @classmethod
    def _is_ed25519_key(cls, value: str | None) -> str | None:
        if value is not None:
            _public_key(value)
        return value

    @model_validator(mode="after")
    def _has_sender(self) -> TelnyxSettings:
        self.require_any("sender", "messaging_profile_id")
        return self


class TelnyxProvider(HttpProvider):
    """The ``telnyx`` provider."""

    type_name: ClassVar[str] = "telnyx"
    settings_class: ClassVar[type[ProviderSettings]] = TelnyxSettings
    default_base_url: ClassVar[str] = "https://api.telnyx.com/v2"
    max_receipt_bytes: ClassVar[int] = 64 * 1024

    def __init__(self, name: str, settings: ProviderSettings) -> None:
        super().__init__(name, settings)
        assert isinstance(settings, TelnyxSettings)
        self.config = settings
        self.messages_url = f"{self.base_url}/messages"
        self._headers = {"Authorization": f"Bearer {secret(settings.api_key)}"}
        key = settings.public_key
        self._public_key = _public_key(key) if key else None

    async def send(self, request: SendRequest) -> SendResult:
        status, headers, body = await self.request(
            "POST", self.messages_url, json=self.message(request), headers=self._headers
        )
        if not 200 <= status < 300:
            self._raise_error(status, headers, body)
        return self._result(body)

    def message(self, request: SendRequest) -> dict[str, Any]:
        """The JSON body of the send call for ``request``."""
        message: dict[str, Any] = {"to": request.to, "text": request.body}
        sender = request.sender or self.config.sender
        optional = {
            "from": sender,
            "messaging_profile_id": self.config.messaging_profile_id,
            "webhook_url": self.config.webhook_url,
            "webhook_failover_url": self.config.webhook_failover_url,
            "use_profile_webhooks": self.config.use_profile_webhooks,
        }
        message.update({k: v for k, v in optional.items() if v is not None})
        return message

    def _result(self, body: bytes) -> SendResult:
        data = json_object(body).get("data")
        data = data if isinstance(data, dict) else {}
        message_id = data.get("id")
        if not isinstance(message_id, str) or not message_id:
            # Telnyx took the message; a retry could send it twice.
            raise UnconfirmedSend(self.name, "bad-response", "200 without a message id")
        return SendResult(provider_message_id=message_id, segments=json_int(data.get("parts")))

    def _raise_error(self, status: int, headers: dict[str, str], body: bytes) -> NoReturn:
        errors = dicts(json_object(body).get("errors"))
        first = errors[0] if errors else {}
        code = str(first.get("code") or f"http-{status}")
        title = str(first.get("title") or f"HTTP {status}")
        detail = first.get("detail")
        message = self._redact(f"{title}: {detail}" if detail else title)
        self.raise_for_code(ERRORS.get(code), status, headers, code, message, _BY_STATUS)

    def _redact(self, message: str) -> str:
        return scrub(message, self.config.api_key)

    # -- receipts -----------------------------------------------------------------------

    def verify_receipt(self, webhook: Webhook, now: datetime) -> None:
        if self._public_key is None:
            raise BadSignature("telnyx receipts need public_key")
        signature = webhook.header("telnyx-signature-ed25519")
        timestamp = webhook.header("telnyx-timestamp")
        if not (signature and timestamp):
            raise BadSignature("telnyx signature headers missing")
        try:
            raw = base64.b64decode(signature, validate=True)
            self._public_key.verify(raw, _signed(webhook))
        except (binascii.Error, InvalidSignature):
            raise BadSignature("telnyx signature does not verify") from None
        check_timestamp(timestamp, now, self.config.receipt_window, "telnyx receipt")

    def replay_key(self, webhook: Webhook) -> bytes:
        # What the Ed25519 signature covers; the signature's own encoding does not count.
        return _signed(webhook)

    def parse_receipts(self, webhook: Webhook) -> list[Receipt]:
        data = report_object(webhook.body, "telnyx webhook").get("data")
        if not isinstance(data, dict) or data.get("event_type") not in _EVENTS:
            return []  # inbound messages and other events are not receipts
        payload = data.get("payload")
        if not isinstance(payload, dict):
            return []
        at = iso_datetime(data.get("occurred_at"))
        return [_receipt(payload, to, at) for to in dicts(payload.get("to"))]


def _signed(webhook: Webhook) -> bytes:
    return (webhook.header("telnyx-timestamp") or "").encode() + b"|" + webhook.body


def _receipt(payload: dict[str, Any], to: dict[str, Any], at: datetime | None) -> Receipt:
    provider_status = str(to.get("status") or "")
    status = RECEIPT_STATUSES.get(provider_status, ReceiptStatus.PENDING)
    errors = dicts(payload.get("errors"))
    code = errors[0].get("code") if errors and status in _FAILED else None
    # ``cost`` (amount and ISO 4217 currency) is the whole message's, once rated.
    found = payload.get("cost")
    cost: dict[str, Any] = found if isinstance(found, dict) else {}
    return Receipt(
        provider_message_id=str_or_none(payload.get("id")),
        status=status,
        provider_status=provider_status,
        error_code=str_or_none(code),
        parts=json_int(payload.get("parts")),
        at=at,
        cost=money(cost.get("amount")),
        currency=currency_code(cost.get("currency")),
    )


def _public_key(value: str) -> Ed25519PublicKey:
    try:
        return Ed25519PublicKey.from_public_bytes(base64.b64decode(value, validate=True))
    except (binascii.Error, ValueError):
        raise ValueError("public_key must be a base64 Ed25519 public key (32 bytes)") from None
