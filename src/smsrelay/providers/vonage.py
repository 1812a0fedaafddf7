"""Vonage (Nexmo): the SMS API (``POST /sms/json``) and its signed delivery receipts.

One form-encoded POST per message, ``api_key`` and ``api_secret`` in the form, our request
id as ``client-ref``, ``type=unicode`` when the body is not GSM-7. Vonage answers HTTP 200
whether or not it took the message: the body lists one entry per SMS part, each with its
own ``status`` ("0" = accepted) and ``message-id``. The first part's id is the provider
message id; ``message-count`` is the segment count. The statuses map onto the error tree
like this (meanings from the ``x-errors`` of Vonage's ``sms.yml``):

======  ======================================================  ======================
status  meaning                                                 class
======  ======================================================  ======================
1       throttled: faster than the account's limit              RateLimited
2       missing parameters                                      PermanentProviderError
3       invalid parameters                                      PermanentProviderError
4       invalid credentials                                     AuthenticationFailed
5       internal error                                          TransientProviderError
6       invalid message (e.g. an unrecognised number prefix)    RecipientRejected
7       number barred: the destination is blacklisted           RecipientRejected
8       partner account barred (suspended)                      AuthenticationFailed
9       partner quota violation: not enough credit              PermanentProviderError
10      too many existing binds ("back off and retry")          RateLimited
11      account not enabled for the HTTP SMS API                AuthenticationFailed
12      message too long                                        PermanentProviderError
14      invalid signature                                       AuthenticationFailed
15      invalid sender address (non-authorised ``from``)        PermanentProviderError
22      invalid network code                                    PermanentProviderError
23      invalid callback URL                                    PermanentProviderError
29      non-whitelisted destination (account in demo mode)      PermanentProviderError
32      signature and API secret both sent                      AuthenticationFailed
33      number de-activated                                     RecipientRejected
======  ======================================================  ======================

Any other non-zero status is a ``PermanentProviderError``. A multipart message whose
first parts were accepted and a later one refused is permanent whatever the status: the
accepted parts are on their way, and a retry would send them twice. Off the 200 path
(Vonage's edge, a proxy): 429 and 5xx are transient, 401/403 ``AuthenticationFailed``,
other statuses permanent.

Receipts (DLRs) arrive as GET query, POST form or POST JSON, as set in the dashboard.
Signed ones carry ``timestamp``, ``nonce`` and ``sig``: the hex digest of every other
parameter, sorted by name, as ``&name=value`` (``&`` and ``=`` in values replaced by
``_``), either MD5 of that text plus the signature secret (``md5hash``) or an HMAC of it
keyed with the secret (``md5``, ``sha1``, ``sha256``, ``sha512``), as chosen in the
dashboard. A receipt is refused when ``sig`` does not verify, or when its ``timestamp``
is more than 300 s from now. Its replay key is the signed text (every parameter but
``sig``, sorted), so the same DLR sent again as another method or encoding, or with
``sig`` in upper case, is the same DLR. A DLR has about fifteen fields and under 2 KB:
over 16 KB or 64 fields, or JSON that is not one flat object, it is refused (400/413)
before its signature is computed. ``err-code`` is kept as the receipt's error code. Vonage
reports each part of a multipart message in its own DLR under that part's message-id;
``client-ref`` (our id) ties them together.

29 and 15 are problems of this Vonage account, not of the number: another provider
might succeed, but the error tree has no "next provider, never retry" class.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Mapping
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any, ClassVar, Literal, NoReturn

from pydantic import Field, SecretStr

from smsrelay import segments
from smsrelay.errors import (
    AuthenticationFailed,
    BadSignature,
    MalformedReceipt,
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
    json_object,
    json_value,
    money,
    scrub,
    secret,
    text_int,
)
from smsrelay.providers.webhooks import check_timestamp, form_params, query_params, same

ERRORS: dict[str, type[ProviderError]] = {
    "1": RateLimited,
    "2": PermanentProviderError,
    "3": PermanentProviderError,
    "4": AuthenticationFailed,
    "5": TransientProviderError,
    "6": RecipientRejected,
    "7": RecipientRejected,
    "8": AuthenticationFailed,
    "9": PermanentProviderError,
    "10": RateLimited,
    "11": AuthenticationFailed,
    "12": PermanentProviderError,
    "14": AuthenticationFailed,
    "15": PermanentProviderError,
    "22": PermanentProviderError,
    "23": PermanentProviderError,
    "29": PermanentProviderError,
    "32": AuthenticationFailed,
    "33": RecipientRejected,
}
"""Vonage SMS API status → the class raised for it (the table above)."""

STATUSES: dict[str, ReceiptStatus] = {
    "delivered": ReceiptStatus.DELIVERED,
    "expired": ReceiptStatus.UNDELIVERED,
    "failed": ReceiptStatus.UNDELIVERED,
    "rejected": ReceiptStatus.FAILED,
    "accepted": ReceiptStatus.PENDING,
    "buffered": ReceiptStatus.PENDING,
    "unknown": ReceiptStatus.PENDING,
}
"""A DLR's ``status`` → the normalised receipt status."""

REPLAY_WINDOW = 300.0
"""Seconds a signed receipt's ``timestamp`` may lie from now."""

# Vonage accepts a client-ref of at most 40 characters; a longer id is not sent (the
# message-id still matches receipts) rather than cut, which could match the wrong message.
_MAX_CLIENT_REF = 40

SignatureMethod = Literal["md5hash", "md5", "sha1", "sha256", "sha512"]


class VonageSettings(ProviderSettings):
    """Vonage credentials, sender and receipt signing.

    ``sender`` (a number or alphanumeric ID) becomes ``from``; a request's own sender
    wins. ``status_callback`` is sent as ``callback`` with every message when set.
    ``signature_secret`` and ``signature_method`` must match the dashboard's signed
    webhooks settings; without a secret every receipt is refused.
    """

    type: Literal["vonage"] = "vonage"
    api_key: str = Field(min_length=1)
    api_secret: SecretStr
    sender: str = Field(min_length=1)
    status_callback: str | None = None
    signature_secret: SecretStr | None = None
    signature_method: SignatureMethod = "sha256"


class VonageProvider(HttpProvider):
    """The ``vonage`` provider."""

    type_name: ClassVar[str] = "vonage"
    settings_class: ClassVar[type[ProviderSettings]] = VonageSettings
    default_base_url: ClassVar[str] = "https://rest.nexmo.com"
    max_receipt_bytes: ClassVar[int] = 16 * 1024
    max_receipt_params: ClassVar[int] = 64

    def __init__(self, name: str, settings: ProviderSettings) -> None:
        super().__init__(name, settings)
        assert isinstance(settings, VonageSettings)
        self.config = settings
        self.sms_url = f"{self.base_url}/sms/json"

    async def send(self, request: SendRequest) -> SendResult:
        status, headers, body = await self.request("POST", self.sms_url, data=self.form(request))
        if status != 200:
            self._raise_for_http(status, headers, body)
        return self._result(json_object(body))

    def form(self, request: SendRequest) -> dict[str, str]:
        """The form fields of the SMS API call for ``request``."""
        fields = {
            "api_key": self.config.api_key,
            "api_secret": secret(self.config.api_secret),
            "from": request.sender or self.config.sender,
            # Vonage wants E.164 without the "+" (the spec's pattern is \d{7,15}).
            "to": request.to.removeprefix("+"),
            "text": request.body,
        }
        if not segments.is_gsm7(request.body):
            fields["type"] = "unicode"
        if len(request.id) <= _MAX_CLIENT_REF:
            fields["client-ref"] = request.id
        if self.config.status_callback:
            fields["callback"] = self.config.status_callback
        return fields

    def _result(self, data: dict[str, Any]) -> SendResult:
        parts = [p for p in data.get("messages") or [] if isinstance(p, dict)]
        if not parts:
            raise UnconfirmedSend(self.name, "bad-response", "200 without messages")
        refused = [(i, p) for i, p in enumerate(parts) if str(p.get("status")) != "0"]
        if refused:
            self._raise_refused(refused[0][0], refused[0][1], accepted=len(refused) < len(parts))
        message_id = parts[0].get("message-id")
        if not isinstance(message_id, str) or not message_id:
            # Vonage took the message; a retry could send it twice.
            raise UnconfirmedSend(self.name, "bad-response", "status 0 without message-id")
        # Vonage sends message-count as a string ("2").
        count = text_int(data.get("message-count")) or len(parts)
        # Each part carries its own "message-price", in the account's currency (unnamed).
        prices = [money(p.get("message-price")) for p in parts]
        known = [p for p in prices if p is not None]
        cost = sum(known, Decimal(0)) if len(known) == len(parts) else None
        return SendResult(provider_message_id=message_id, segments=count, cost=cost)

    def _raise_refused(self, index: int, part: dict[str, Any], accepted: bool) -> NoReturn:
        code = str(part.get("status"))
        text = self._redact(str(part.get("error-text") or f"status {code}"))
        if accepted:
            message = f"part {index + 1} refused after other parts were accepted: {text}"
            raise PermanentProviderError(self.name, code, message)
        error_class = ERRORS.get(code, PermanentProviderError)
        if error_class is RateLimited:
            raise RateLimited(self.name, code, text)
        raise error_class(self.name, code, text)

    def _raise_for_http(self, status: int, headers: dict[str, str], body: bytes) -> NoReturn:
        code = f"http-{status}"
        message = self._redact(body[:200].decode(errors="replace") or f"HTTP {status}")
        self.raise_for_http_status(status, headers, code, message)
        if status in (401, 403):
            raise AuthenticationFailed(self.name, code, message)
        raise PermanentProviderError(self.name, code, message)

    def _redact(self, message: str) -> str:
        return scrub(message, self.config.api_secret, self.config.signature_secret)

    # -- receipts -------------------------------------------------------------------------

    def verify_receipt(self, webhook: Webhook, now: datetime) -> None:
        key = secret(self.config.signature_secret)
        if not key:
            raise BadSignature("vonage: no signature_secret configured, receipts are refused")
        params = receipt_params(webhook)
        given = params.pop("sig", "")
        if not given:
            raise BadSignature("vonage receipt without sig")
        expected = signature(params, key, self.config.signature_method)
        if not same(given.lower(), expected):
            raise BadSignature("vonage receipt signature does not verify")
        check_timestamp(params.get("timestamp"), now, REPLAY_WINDOW, "vonage receipt")

    def replay_key(self, webhook: Webhook) -> bytes:
        params = receipt_params(webhook)
        params.pop("sig", None)
        return signed_text(params)

    def parse_receipts(self, webhook: Webhook) -> list[Receipt]:
        params = receipt_params(webhook)
        status = params.get("status")
        if not status or not params.get("messageId"):
            return []
        receipt = Receipt(
            provider_message_id=params["messageId"],
            message_id=params.get("client-ref") or None,
            status=STATUSES.get(status, ReceiptStatus.PENDING),
            provider_status=status,
            error_code=_error_code(params.get("err-code")),
            at=_scts(params.get("scts")),
            # The price of this part, in the account's currency, which Vonage does not
            # name (as in the send answer). A multipart message's parts each report
            # their own: the first one kept is taken (see the README's "Prices").
            cost=money(params.get("price")),
        )
        return [receipt]


def receipt_params(webhook: Webhook) -> dict[str, str]:
    """A DLR's parameters, whether Vonage sent them as query, form or JSON.

    Raises ``MalformedReceipt`` for JSON that is not one flat object: the signature is
    over the parameters, so they are read (within the size limit) before it is checked.
    """
    if webhook.method.upper() == "GET" or not webhook.body:
        return query_params(webhook)
    if "json" in (webhook.header("content-type") or ""):
        return _flat_json(webhook.body, VonageProvider.max_receipt_params)
    return form_params(webhook.body)


def _flat_json(body: bytes, max_fields: int) -> dict[str, str]:
    try:
        data = json_value(body)
    except ValueError:
        raise MalformedReceipt("vonage receipt is not JSON") from None
    if not isinstance(data, dict) or not all(_scalar(v) for v in data.values()):
        raise MalformedReceipt("vonage receipt is not one flat JSON object")
    if len(data) > max_fields:
        raise MalformedReceipt(f"vonage receipts carry at most {max_fields} fields")
    return {k: str(v) for k, v in data.items() if v is not None}


def _scalar(value: object) -> bool:
    return value is None or isinstance(value, str | int | float | bool)


def signed_text(params: Mapping[str, str]) -> bytes:
    """What Vonage signs: ``&name=value`` for every parameter (``sig`` left out), sorted."""
    return "".join(f"&{name}={_clean(params[name])}" for name in sorted(params)).encode()


def signature(params: Mapping[str, str], key: str, method: SignatureMethod) -> str:
    """Vonage's signature of ``params`` (without ``sig``) as lower-case hex."""
    text = signed_text(params)
    if method == "md5hash":
        return hashlib.md5(text + key.encode()).hexdigest()
    return hmac.new(key.encode(), text, method).hexdigest()


def _clean(value: str) -> str:
    return value.replace("&", "_").replace("=", "_")


def _error_code(value: str | None) -> str | None:
    # err-code "0" means no error.
    return value if value and value != "0" else None


def _scts(value: str | None) -> datetime | None:
    # When the carrier reported the status, as YYMMDDHHMM (UTC).
    try:
        return datetime.strptime(value or "", "%y%m%d%H%M").replace(tzinfo=UTC)
    except ValueError:
        return None
