"""Twilio: the Programmable Messaging API (``POST /2010-04-01/Accounts/{sid}/Messages.json``).

One form-encoded POST per message, HTTP Basic auth with AccountSid:AuthToken. A 201
answer carries the message ``sid`` and ``num_segments``; an error answer carries
``{"code", "message", "status"}``. Twilio's codes map onto the error tree like this
(meanings from Twilio's error dictionary):

=====  ==========================================================  ======================
code   meaning                                                     class
=====  ==========================================================  ======================
20003  permission denied: wrong AccountSid or AuthToken            AuthenticationFailed
20005  account not active (out of funds, trial not activated)      AuthenticationFailed
20404  not found: on the Messages URL, the account does not exist  AuthenticationFailed
20429  too many concurrent API requests                            RateLimited
21211  invalid 'To' phone number                                   RecipientRejected
21408  region of 'To' not enabled in the account's geo permissions PermanentProviderError
21606  'From' is not a message-capable Twilio number for 'To'      PermanentProviderError
21608  trial account: 'To' is not a verified number                PermanentProviderError
21610  recipient has unsubscribed (replied STOP)                   RecipientRejected
21611  'From' has too many queued messages                         RateLimited
21612  'To' is not reachable via SMS                               RecipientRejected
21614  'To' is not a valid mobile number (e.g. a landline)         RecipientRejected
21703  the Messaging Service has no sender for this recipient      PermanentProviderError
30003  unreachable destination handset                             RecipientRejected
30004  message blocked for this destination                        RecipientRejected
30005  unknown destination handset                                 RecipientRejected
30006  landline or unreachable carrier                             RecipientRejected
30007  message filtered by the carrier (content)                   PermanentProviderError
30008  unknown error (a resend may duplicate a delivered message)  PermanentProviderError
=====  ==========================================================  ======================

A code not in the table falls back on the HTTP status: 429 → ``RateLimited`` (with
``Retry-After``), 5xx → ``TransientProviderError``, 401/403 → ``AuthenticationFailed``,
any other 4xx → ``PermanentProviderError``. The 30xxx codes arrive in status callbacks
rather than in the send answer; they are here so receipts read the same table.

21408 and 21606 are problems of this Twilio account, not of the number, so another
provider might succeed; the error tree has no "next provider but never retry" class and
retrying Twilio cannot help, so they are permanent.

Receipts are Twilio's status callbacks (``status_callback`` →
``POST /v1/receipts/<name>``): a form with ``MessageSid``, ``MessageStatus`` and, on
failure, ``ErrorCode``, signed in ``X-Twilio-Signature`` (see ``verify_receipt``). One
callback reports the whole message, not its parts. A status callback has about fifteen
fields and well under 2 KB, so a webhook over 16 KB (``max_receipt_bytes``) or 64
fields (``max_receipt_params``) is refused before its signature is computed. Its replay
key is what the signature covers: the URL (without a default port, which the check
ignores) and the decoded, sorted, de-duplicated parameters, so a reordered or
re-encoded replay is still the same callback.
"""

from __future__ import annotations

import hashlib
import hmac
from datetime import UTC, datetime
from typing import ClassVar, Literal, NoReturn
from urllib.parse import urlsplit

from pydantic import Field, SecretStr, model_validator

from smsrelay.errors import (
    AuthenticationFailed,
    BadSignature,
    PermanentProviderError,
    ProviderError,
    RateLimited,
    RecipientRejected,
    UnconfirmedSend,
)
from smsrelay.models import Receipt, ReceiptStatus, SendRequest, SendResult
from smsrelay.providers.base import (
    HttpProvider,
    ProviderSettings,
    Webhook,
    basic_auth,
    json_object,
    scrub,
    secret,
    text_int,
)
from smsrelay.providers.webhooks import canonical, form_pairs, hmac_b64, single_values

ERRORS: dict[str, type[ProviderError]] = {
    "20003": AuthenticationFailed,
    "20005": AuthenticationFailed,
    "20404": AuthenticationFailed,
    "20429": RateLimited,
    "21211": RecipientRejected,
    "21408": PermanentProviderError,
    "21606": PermanentProviderError,
    "21608": PermanentProviderError,
    "21610": RecipientRejected,
    "21611": RateLimited,
    "21612": RecipientRejected,
    "21614": RecipientRejected,
    "21703": PermanentProviderError,
    "30003": RecipientRejected,
    "30004": RecipientRejected,
    "30005": RecipientRejected,
    "30006": RecipientRejected,
    "30007": PermanentProviderError,
    "30008": PermanentProviderError,
}
"""Twilio error code → the class raised for it (the table above)."""

_BY_STATUS: dict[int, type[ProviderError]] = {
    401: AuthenticationFailed,
    403: AuthenticationFailed,
}

# Twilio's error messages quote the numbers they refuse ("Invalid 'To' Phone Number: +1...").


class TwilioSettings(ProviderSettings):
    """Twilio credentials and sender.

    ``sender`` (a number or alphanumeric ID) becomes From, ``messaging_service_sid``
    MessagingServiceSid; one of them is required, and a request's own sender wins over
    ``sender``. ``status_callback`` is sent with every message when set.
    """

    type: Literal["twilio"] = "twilio"
    account_sid: str = Field(pattern=r"^AC[0-9a-fA-F]{32}$")
    auth_token: SecretStr
    messaging_service_sid: str | None = Field(default=None, pattern=r"^MG[0-9a-fA-F]{32}$")
    status_callback: str | None = None

    @model_validator(mode="after")
    def _has_sender(self) -> TwilioSettings:
        self.require_any("sender", "messaging_service_sid")
        return self


class TwilioProvider(HttpProvider):
    """The ``twilio`` provider."""

    type_name: ClassVar[str] = "twilio"
    settings_class: ClassVar[type[ProviderSettings]] = TwilioSettings
    default_base_url: ClassVar[str] = "https://api.twilio.com"
    max_receipt_bytes: ClassVar[int] = 16 * 1024
    max_receipt_params: ClassVar[int] = 64

    def __init__(self, name: str, settings: ProviderSettings) -> None:
        super().__init__(name, settings)
        assert isinstance(settings, TwilioSettings)
        self.config = settings
        self.messages_url = (
            f"{self.base_url}/2010-04-01/Accounts/{settings.account_sid}/Messages.json"
        )
        self._headers = {
            "Authorization": basic_auth(settings.account_sid, secret(settings.auth_token))
        }

    async def send(self, request: SendRequest) -> SendResult:
        status, headers, body = await self.request(
            "POST", self.messages_url, data=self.form(request), headers=self._headers
        )
        if not 200 <= status < 300:
            self._raise_error(status, headers, body)
        return self._result(body)

    def form(self, request: SendRequest) -> dict[str, str]:
        """The form fields of the Messages API call for ``request``."""
        fields = {"To": request.to, "Body": request.body}
        sender = request.sender or self.config.sender
        if sender:
            fields["From"] = sender
        if self.config.messaging_service_sid:
            fields["MessagingServiceSid"] = self.config.messaging_service_sid
        if self.config.status_callback:
            fields["StatusCallback"] = self.config.status_callback
        return fields

    def _result(self, body: bytes) -> SendResult:
        data = json_object(body)
        sid = data.get("sid")
        if not isinstance(sid, str) or not sid:
            # Twilio took the message; a retry could send it twice.
            raise UnconfirmedSend(self.name, "bad-response", "201 without a message sid")
        # Twilio sends num_segments as a string ("1").
        return SendResult(provider_message_id=sid, segments=text_int(data.get("num_segments")))

    def _raise_error(self, status: int, headers: dict[str, str], body: bytes) -> NoReturn:
        data = json_object(body)
        code = str(data.get("code") or f"http-{status}")
        message = self._redact(str(data.get("message") or f"HTTP {status}"))
        self.raise_for_code(ERRORS.get(code), status, headers, code, message, _BY_STATUS)

    def _redact(self, message: str) -> str:
        return scrub(message, self.config.auth_token)

    # -- receipts (status callbacks) ----------------------------------------------------

    def verify_receipt(self, webhook: Webhook, now: datetime) -> None:
        """Check ``X-Twilio-Signature``: base64(HMAC-SHA1(auth token, URL + sorted params)).

        Twilio's scheme has no timestamp, so ``now`` is unused: replays are refused by
        the API's digest of accepted webhooks. As Twilio's own validator does, the URL
        is tried with and without its default port.
        """
        given = webhook.header("X-Twilio-Signature")
        if not given:
            raise BadSignature("X-Twilio-Signature is missing")
        params = _signed_params(webhook)
        key = secret(self.config.auth_token).encode()
        for url in _url_variants(webhook.url):
            if hmac.compare_digest(twilio_signature(key, url, params), given):
                return
        raise BadSignature("X-Twilio-Signature does not verify")

    def replay_key(self, webhook: Webhook) -> bytes:
        """The signed URL (default port dropped) and the signed parameters, canonical."""
        pairs = sorted(set(_signed_params(webhook)))
        return canonical(_without_port(webhook.url), *(f"{n}={v}" for n, v in pairs))

    def parse_receipts(self, webhook: Webhook) -> list[Receipt]:
        """The status callback's one report (none if the form carries no status)."""
        form = single_values(form_pairs(webhook.body))
        sid = form.get("MessageSid") or form.get("SmsSid")
        raw = form.get("MessageStatus") or form.get("SmsStatus")
        if not sid or not raw:
            return []
        return [
            Receipt(
                provider_message_id=sid,
                status=RECEIPT_STATUSES.get(raw.lower(), ReceiptStatus.PENDING),
                provider_status=raw,
                error_code=form.get("ErrorCode") or None,
                parts=text_int(form.get("NumSegments")),
                at=_dlr_done(form.get("RawDlrDoneDate")),
            )
        ]


def twilio_signature(key: bytes, url: str, params: list[tuple[str, str]]) -> str:
    """What Twilio puts in ``X-Twilio-Signature`` for a POST of ``params`` to ``url``.

    The names sorted, each name's distinct values sorted (as Twilio's validator does):
    one sort of the de-duplicated pairs, n log n, never a rescan per name.
    """
    payload = url + "".join(name + value for name, value in sorted(set(params)))
    return hmac_b64(key, payload.encode(), hashlib.sha1)


RECEIPT_STATUSES: dict[str, ReceiptStatus] = {
    "delivered": ReceiptStatus.DELIVERED,
    "read": ReceiptStatus.DELIVERED,
    "undelivered": ReceiptStatus.UNDELIVERED,
    "failed": ReceiptStatus.FAILED,
    "canceled": ReceiptStatus.FAILED,
}
"""Twilio MessageStatus → receipt status; the rest (queued, sending, sent…) is pending."""


def _signed_params(webhook: Webhook) -> list[tuple[str, str]]:
    # A JSON body is signed through the URL's bodySHA256 parameter instead of its fields.
    declared = webhook.query.get("bodySHA256")
    if declared is None:
        return form_pairs(webhook.body)
    if not hmac.compare_digest(hashlib.sha256(webhook.body).hexdigest(), declared.lower()):
        raise BadSignature("body does not match bodySHA256")
    return []


def _url_variants(url: str) -> list[str]:
    parts = urlsplit(url)
    host = _host(url)
    default = {"https": 443, "http": 80}.get(parts.scheme)
    try:
        port = parts.port or default
    except ValueError:  # a forwarded host with a port that is not a number: signed as sent
        port = None
    with_port = parts._replace(netloc=f"{host}:{port}" if port else host).geturl()
    return list(dict.fromkeys([url, _without_port(url), with_port]))


def _without_port(url: str) -> str:
    return urlsplit(url)._replace(netloc=_host(url)).geturl()


def _host(url: str) -> str:
    host = urlsplit(url).hostname or ""
    return f"[{host}]" if ":" in host else host


def _dlr_done(value: str | None) -> datetime | None:
    # RawDlrDoneDate is the carrier's YYMMDDhhmm (UTC), present on some delivered reports.
    try:
        return datetime.strptime(value, "%y%m%d%H%M").replace(tzinfo=UTC) if value else None
    except ValueError:
        return None
