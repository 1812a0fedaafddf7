"""Infobip: the SMS API v3, ``POST /sms/3/messages``.

One JSON request per message (``messages[0].destinations[0]``), ``Authorization: App
<API key>``, on the account's base URL (``https://<id>.api.infobip.com``, or the generic
``https://api.infobip.com``). Numbers go in international format without the ``+``,
as Infobip documents them. Our request id is the destination's ``messageId``, so Infobip
echoes it in the answer and in every delivery report. It also makes a resend idempotent:
Infobip refuses a messageId it has seen with ``REJECTED_DUPLICATE_MESSAGE_ID``, which
means an earlier attempt of this very request (say, one whose answer timed out) was
taken, so it counts as sent rather than as an error another provider should retry (if
that attempt was itself refused later, its delivery report says so). Infobip's answer
carries the part count when ``includeSmsCountInResponse`` asks for it.

A 200 answer lists each message with a ``status`` ``{groupName, id, name}``: groups
REJECTED and UNDELIVERABLE mean refused, any other (PENDING, ACCEPTED…) taken; refusals
raise by status name (meanings from Infobip's "Response status and error codes"):

===================================  ===  ==================================  ======================
status name                          id   meaning                             class
===================================  ===  ==================================  ======================
REJECTED_NETWORK                     6    network not covered on the account  PermanentProviderError
REJECTED_PREFIX_MISSING              8    prefix or length not recognised     RecipientRejected
REJECTED_DND                         10   recipient is on Do Not Disturb      RecipientRejected
REJECTED_SOURCE                      11   sender ID not registered            PermanentProviderError
REJECTED_NOT_ENOUGH_CREDITS          12   account out of credit               AuthenticationFailed
REJECTED_SENDER                      13   sender ID blocklisted               PermanentProviderError
REJECTED_DESTINATION_BLOCKLISTED     14   destination blocklisted             RecipientRejected
REJECTED_PREPAID_PACKAGE_EXPIRED     17   account credit expired              AuthenticationFailed
REJECTED_DESTINATION_NOT_REGISTERED  18   test account, other number          PermanentProviderError
REJECTED_ROUTE_NOT_AVAILABLE         19   no route set up on the account      PermanentProviderError
REJECTED_FLOODING_FILTER             20   too many to this number per hour    RateLimited
REJECTED_SYSTEM_ERROR                21   Infobip system error, retry         TransientProviderError
REJECTED_DUPLICATE_MESSAGE_ID        23   this messageId was already taken    none: sent earlier
REJECTED_INVALID_UDH                 24   malformed UDH (our bug)             PermanentProviderError
REJECTED_MESSAGE_TOO_LONG            25   over 25 parts or 4000 bytes         PermanentProviderError
MISSING_TO                           51   no destination (our bug)            PermanentProviderError
REJECTED_DESTINATION                 52   invalid destination number          RecipientRejected
REJECTED_INVALID_DESTINATION         —    the same, as older docs name it     RecipientRejected
SIGNALS_BLOCKED                      87   refused by anti-fraud checks        PermanentProviderError
UNDELIVERABLE_REJECTED_PLATFORM      100  invalid, or service unavailable     TransientProviderError
===================================  ===  ==================================  ======================

Another REJECTED or UNDELIVERABLE status is a ``PermanentProviderError``. A refused
request is HTTP 4xx/5xx with an ``ApiError`` ``{errorCode, description, violations}``:

=========  ====  ================================================  ======================
errorCode  HTTP  meaning                                           class
=========  ====  ================================================  ======================
E400       400   request cannot be processed; a violation on a     PermanentProviderError
                 destination's ``to`` means the number             RecipientRejected
E401       401   missing or wrong API key                          AuthenticationFailed
E403       403   the API key lacks the scope                       AuthenticationFailed
E429       429   too many requests                                 RateLimited
E500       500   Infobip failed                                    TransientProviderError
=========  ====  ================================================  ======================

Any other answer falls back on the HTTP status the same way.

Receipts: Infobip does not sign its webhooks. A receipt is trusted when it carries the
configured shared secret in ``receipt_header`` or the configured HTTP Basic credentials
(Infobip's subscription security "BASIC"), compared in constant time; without either
configured, every receipt is refused. Nothing authenticated carries a time, so there is
no replay window: a replayed report is refused only by the API's digest of its body (as
canonical JSON: re-spaced or reordered, it is the same report), and anyone holding the
credentials can post reports. Infobip batches reports (``results[]``), so a webhook may
weigh up to 1 MB. A report's ``results[]`` normalise by
``status.groupName``: DELIVERED → delivered (but DELIVERED_TO_OPERATOR → pending: the
handset has not confirmed), PENDING/ACCEPTED → pending, UNDELIVERABLE and EXPIRED →
undelivered, REJECTED → failed. ``error.id`` is kept for failures and ``messageCount`` as
the part count; ``doneAt`` is read leniently (Infobip writes ``+0100`` without a colon).
``price.pricePerMessage`` (per SMS, says the spec) times ``messageCount`` is the receipt's
cost, in ``price.currency``.
"""

from __future__ import annotations

import re
from datetime import datetime
from decimal import Decimal
from typing import Any, ClassVar, Literal, NoReturn

from pydantic import Field, SecretStr, model_validator

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
    basic_auth,
    currency_code,
    dicts,
    json_int,
    json_object,
    money,
    scrub,
    secret,
    str_or_none,
)
from smsrelay.providers.webhooks import canonical_json, report_object, same

STATUSES: dict[str, type[ProviderError]] = {
    "REJECTED_NETWORK": PermanentProviderError,
    "REJECTED_PREFIX_MISSING": RecipientRejected,
    "REJECTED_DND": RecipientRejected,
    "REJECTED_SOURCE": PermanentProviderError,
    "REJECTED_NOT_ENOUGH_CREDITS": AuthenticationFailed,
    "REJECTED_SENDER": PermanentProviderError,
    "REJECTED_DESTINATION_BLOCKLISTED": RecipientRejected,
    "REJECTED_PREPAID_PACKAGE_EXPIRED": AuthenticationFailed,
    "REJECTED_DESTINATION_NOT_REGISTERED": PermanentProviderError,
    "REJECTED_ROUTE_NOT_AVAILABLE": PermanentProviderError,
    "REJECTED_FLOODING_FILTER": RateLimited,
    "REJECTED_SYSTEM_ERROR": TransientProviderError,
    "REJECTED_INVALID_UDH": PermanentProviderError,
    "REJECTED_MESSAGE_TOO_LONG": PermanentProviderError,
    "MISSING_TO": PermanentProviderError,
    "REJECTED_DESTINATION": RecipientRejected,
    "REJECTED_INVALID_DESTINATION": RecipientRejected,
    "SIGNALS_BLOCKED": PermanentProviderError,
    "UNDELIVERABLE_REJECTED_PLATFORM": TransientProviderError,
}
"""Infobip message status name (in a 200 answer) → the class raised for it."""

ERRORS: dict[str, type[ProviderError]] = {
    "E400": PermanentProviderError,
    "E401": AuthenticationFailed,
    "E403": AuthenticationFailed,
    "E429": RateLimited,
    "E500": TransientProviderError,
}
"""Infobip ``ApiError.errorCode`` → the class raised for it (the second table above)."""

RECEIPT_GROUPS: dict[str, ReceiptStatus] = {
    "DELIVERED": ReceiptStatus.DELIVERED,
    "PENDING": ReceiptStatus.PENDING,
    "ACCEPTED": ReceiptStatus.PENDING,
    "UNDELIVERABLE": ReceiptStatus.UNDELIVERED,
    "EXPIRED": ReceiptStatus.UNDELIVERED,
    "REJECTED": ReceiptStatus.FAILED,
}
"""Infobip status group → the normalised receipt status (DELIVERED_TO_OPERATOR aside)."""

# Only these groups refuse a message. Any other (or none) with a messageId was taken:
# reading an unknown group as a refusal could have another provider send it twice.
_REFUSED = frozenset({"REJECTED", "UNDELIVERABLE"})
_BY_STATUS: dict[int, type[ProviderError]] = {
    401: AuthenticationFailed,
    403: AuthenticationFailed,
}
_FAILED = (ReceiptStatus.UNDELIVERED, ReceiptStatus.FAILED)
# Infobip writes offsets without a colon ("+0100"); fromisoformat wants "+01:00".
_OFFSET = re.compile(r"([+-]\d{2})(\d{2})$")


class InfobipSettings(ProviderSettings):
    """Infobip API key, sender, delivery URL, and how receipts prove their origin.

    ``sender`` becomes the message's ``sender`` (a request's own sender wins).
    ``delivery_url`` goes out as ``webhooks.delivery.url``; without it the account's
    subscription decides. Receipts need ``receipt_secret`` (expected in the header
    ``receipt_header``) or ``receipt_username``/``receipt_password`` (HTTP Basic).
    """

    type: Literal["infobip"] = "infobip"
    api_key: SecretStr
    delivery_url: str | None = None
    receipt_header: str = Field(default="x-smsrelay-secret", pattern=r"^[A-Za-z0-9-]+$")
    receipt_secret: SecretStr | None = None
    receipt_username: str | None = None
    receipt_password: SecretStr | None = None

    @model_validator(mode="after")
    def _basic_pair(self) -> InfobipSettings:
        self.require_together("receipt_username", "receipt_password")
        return self


class InfobipProvider(HttpProvider):
    """The ``infobip`` provider."""

    type_name: ClassVar[str] = "infobip"
    settings_class: ClassVar[type[ProviderSettings]] = InfobipSettings
    default_base_url: ClassVar[str] = "https://api.infobip.com"
    # Infobip signs nothing, so the API's replay digest is over the body alone.
    max_receipt_bytes: ClassVar[int] = 1024 * 1024

    def __init__(self, name: str, settings: ProviderSettings) -> None:
        super().__init__(name, settings)
        assert isinstance(settings, InfobipSettings)
        self.config = settings
        self.messages_url = f"{self.base_url}/sms/3/messages"
        self._headers = {"Authorization": f"App {secret(settings.api_key)}"}

    async def send(self, request: SendRequest) -> SendResult:
        status, headers, body = await self.request(
            "POST", self.messages_url, json=self.envelope(request), headers=self._headers
        )
        if not 200 <= status < 300:
            self._raise_error(status, headers, body)
        return self._result(body)

    def envelope(self, request: SendRequest) -> dict[str, Any]:
        """The JSON body of the send call for ``request``."""
        message: dict[str, Any] = {
            "destinations": [{"to": request.to.removeprefix("+"), "messageId": request.id}],
            "content": {"text": request.body},
        }
        sender = request.sender or self.config.sender
        if sender:
            message["sender"] = sender
        if self.config.delivery_url:
            message["webhooks"] = {"delivery": {"url": self.config.delivery_url}}
        return {"messages": [message], "options": {"includeSmsCountInResponse": True}}

    def _result(self, body: bytes) -> SendResult:
        messages = dicts(json_object(body).get("messages"))
        first = messages[0] if messages else {}
        message_id = first.get("messageId")
        if not isinstance(message_id, str) or not message_id:
            # Infobip took the request; a retry could send it twice.
            raise UnconfirmedSend(self.name, "bad-response", "200 without a messageId")
        status = first.get("status")
        self._raise_if_refused(status if isinstance(status, dict) else {})
        details = first.get("details")
        count = details.get("messageCount") if isinstance(details, dict) else None
        # Where the answer carries a price (as delivery reports do): pricePerMessage.
        found = first.get("price")
        price: dict[str, Any] = found if isinstance(found, dict) else {}
        return SendResult(
            provider_message_id=message_id,
            segments=json_int(count),
            cost=money(price.get("pricePerMessage")),
            currency=currency_code(price.get("currency")),
        )

    def _raise_if_refused(self, status: dict[str, Any]) -> None:
        group = str(status.get("groupName") or "")
        if group not in _REFUSED or status.get("name") == "REJECTED_DUPLICATE_MESSAGE_ID":
            return
        name = str(status.get("name") or group)
        text = self._redact(str(status.get("description") or name))
        raise STATUSES.get(name, PermanentProviderError)(self.name, name, text)

    def _raise_error(self, status: int, headers: dict[str, str], body: bytes) -> NoReturn:
        data = json_object(body)
        code = str(data.get("errorCode") or f"http-{status}")
        message = self._redact(str(data.get("description") or f"HTTP {status}"))
        error_class = ERRORS.get(code)
        if error_class in (None, RateLimited, TransientProviderError):
            # 429 and 5xx (and Retry-After) are handled the same way for every provider.
            self.raise_for_http_status(status, headers, code, message)
        if error_class is PermanentProviderError and _names_destination(data):
            error_class = RecipientRejected
        if error_class is None:
            error_class = _BY_STATUS.get(status, PermanentProviderError)
        raise error_class(self.name, code, message)

    def _redact(self, message: str) -> str:
        return scrub(message, self.config.api_key)

    # -- receipts -----------------------------------------------------------------------

    def verify_receipt(self, webhook: Webhook, now: datetime) -> None:
        # `now` is unused: nothing Infobip sends proves when it was sent.
        checks = (self._secret_header_matches(webhook), self._basic_auth_matches(webhook))
        configured = [matched for matched in checks if matched is not None]
        if not configured:
            raise BadSignature("infobip receipts need receipt_secret or receipt_username")
        if not any(configured):
            raise BadSignature("infobip receipt credentials do not match")

    def _secret_header_matches(self, webhook: Webhook) -> bool | None:
        expected = secret(self.config.receipt_secret)
        if not expected:
            return None
        return same(webhook.header(self.config.receipt_header) or "", expected)

    def _basic_auth_matches(self, webhook: Webhook) -> bool | None:
        username, password = self.config.receipt_username, secret(self.config.receipt_password)
        if username is None:
            return None
        return same(webhook.header("authorization") or "", basic_auth(username, password))

    def replay_key(self, webhook: Webhook) -> bytes:
        return canonical_json(webhook.body)

    def parse_receipts(self, webhook: Webhook) -> list[Receipt]:
        data = report_object(webhook.body, "infobip report")
        return [_receipt(result) for result in dicts(data.get("results"))]


def _receipt(result: dict[str, Any]) -> Receipt:
    status_object = result.get("status")
    status_info = status_object if isinstance(status_object, dict) else {}
    name = str(status_info.get("name") or status_info.get("groupName") or "")
    status = _receipt_status(status_info)
    error = result.get("error")
    error_id = error.get("id") if isinstance(error, dict) and status in _FAILED else None
    message_id = str_or_none(result.get("messageId"))
    parts = json_int(result.get("messageCount") or result.get("smsCount"))
    found = result.get("price")
    price: dict[str, Any] = found if isinstance(found, dict) else {}
    return Receipt(
        provider_message_id=message_id,
        message_id=message_id,
        status=status,
        provider_status=name,
        error_code=str_or_none(error_id),
        parts=parts,
        at=_lenient_datetime(result.get("doneAt")),
        cost=_message_cost(money(price.get("pricePerMessage")), parts),
        currency=currency_code(price.get("currency")),
    )


def _message_cost(per_part: Decimal | None, parts: int | None) -> Decimal | None:
    # The spec's Price.pricePerMessage is "Price per one SMS"; the report's
    # messageCount is how many SMS the message took.
    if per_part is None:
        return None
    return per_part * parts if parts is not None and 0 < parts <= 255 else per_part


def _receipt_status(status: dict[str, Any]) -> ReceiptStatus:
    if status.get("name") == "DELIVERED_TO_OPERATOR":
        return ReceiptStatus.PENDING
    return RECEIPT_GROUPS.get(str(status.get("groupName")), ReceiptStatus.PENDING)


def _names_destination(error: dict[str, Any]) -> bool:
    # A violation on messages[i].destinations[j].to means the number itself was refused.
    violations = dicts(error.get("violations"))
    return any(str(v.get("property", "")).endswith(".to") for v in violations)


def _lenient_datetime(value: object) -> datetime | None:
    if not isinstance(value, str):
        return None
    try:
        return datetime.fromisoformat(_OFFSET.sub(r"\1:\2", value))
    except ValueError:
        return None
