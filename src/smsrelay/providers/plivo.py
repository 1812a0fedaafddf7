"""Plivo: the Message API (``POST /v1/Account/{auth_id}/Message/``) and its signed callbacks.

One JSON POST per message ``{src, dst, text, url, method}``, HTTP Basic auth with
auth_id:auth_token. A 202 answers ``{api_id, message, message_uuid: [...]}``: one uuid
per destination, also for a long message (Plivo splits it into units later, and reports
the count in callbacks), so the result carries no segment count. Plivo has no
client-reference field: our id travels as ``smsrelay_id`` in the query of the status
callback ``url``, which Plivo signs with the rest.

A refused call answers ``{api_id, error}`` with a text and no code of its own, so the
error code is ``http-<status>`` and the HTTP status decides (Plivo's API response list):

======  ==========================================================  ======================
HTTP    meaning                                                     class
======  ==========================================================  ======================
400     the ``error`` names ``dst``: invalid or missing destination RecipientRejected
400     any other invalid or missing parameter, insufficient credit PermanentProviderError
401     authentication failed: wrong auth_id or auth_token          AuthenticationFailed
403     forbidden for this account                                  AuthenticationFailed
404     not found: on the Message URL, the account does not exist   AuthenticationFailed
429     too many requests                                           RateLimited
5xx     Plivo failed                                                TransientProviderError
======  ==========================================================  ======================

Any other status is permanent.

Callbacks arrive as POST form data (or a GET query) with ``MessageUUID``, ``Status``
(queued, sent, delivered, undelivered, failed, rejected), ``ErrorCode`` (Plivo's
delivery error codes, kept as the receipt's error code: 10 invalid message, 20 network
error, 30 spam detected, 40 invalid source number, 50 invalid destination number,
900 insufficient credit, …; "000" means none), ``Units`` and ``PartInfo``,
``TotalRate`` and ``TotalAmount`` (the charge per unit and for the whole message, in US
dollars: kept as the receipt's cost), and the
``ParentMessageUUID`` that every part of a long message shares with the uuid the send
returned. They are signed with ``X-Plivo-Signature-V3``: base64 HMAC-SHA256, keyed with
the auth token, of the URL (its query sorted), then for a POST ``?`` or ``.`` and the
form parameters sorted by name as ``namevalue``, then ``.`` and
``X-Plivo-Signature-V3-Nonce`` — exactly what plivo-python's ``validate_v3_signature``
computes. The header may list several signatures, comma-separated (one per active
token). V3 carries no timestamp, so there is no replay window to check here: replays are
refused by the API's digest of ``replay_key``, the signed URL and parameters in their
canonical (decoded, sorted) form without the nonce, so a reordered or re-encoded copy
is still the same callback. A nonce cache here would also refuse Plivo's retry of a
callback that we failed to record. A callback has about twenty fields and under 2 KB:
over 16 KB or 64 fields it is refused before the signature is computed.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any, ClassVar, Literal, NoReturn
from urllib.parse import parse_qs, urlencode, urlsplit, urlunsplit

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
    basic_auth,
    json_object,
    money,
    scrub,
    secret,
)
from smsrelay.providers.webhooks import canonical, hmac_b64, same

STATUSES: dict[str, ReceiptStatus] = {
    "delivered": ReceiptStatus.DELIVERED,
    "undelivered": ReceiptStatus.UNDELIVERED,
    "failed": ReceiptStatus.FAILED,
    "rejected": ReceiptStatus.FAILED,
    "sent": ReceiptStatus.PENDING,
    "queued": ReceiptStatus.PENDING,
}
"""A callback's ``Status`` → the normalised receipt status."""

REFERENCE_PARAM = "smsrelay_id"
"""The callback URL's query parameter that carries our request id."""

_BY_STATUS: dict[int, type[ProviderError]] = {
    401: AuthenticationFailed,
    403: AuthenticationFailed,
    404: AuthenticationFailed,
}
_PART_INFO = re.compile(r"(\d+)\D+(\d+)")
_NO_ERROR = {"", "0", "000"}


class PlivoSettings(ProviderSettings):
    """Plivo credentials, sender and status callback.

    ``sender`` (a Plivo number or an alphanumeric sender ID) becomes ``src``; a request's
    own sender wins. ``status_callback`` is sent as ``url`` (POST) with every message,
    with our id added to its query as ``smsrelay_id``; without it Plivo sends no receipts.
    """

    type: Literal["plivo"] = "plivo"
    # Main accounts' Auth IDs start MA, subaccounts' SA; 20 characters in all.
    auth_id: str = Field(pattern=r"^[MS]A[A-Z0-9]{18}$")
    auth_token: SecretStr
    sender: str = Field(min_length=1)
    status_callback: str | None = None


class PlivoProvider(HttpProvider):
    """The ``plivo`` provider."""

    type_name: ClassVar[str] = "plivo"
    settings_class: ClassVar[type[ProviderSettings]] = PlivoSettings
    default_base_url: ClassVar[str] = "https://api.plivo.com"
    max_receipt_bytes: ClassVar[int] = 16 * 1024
    max_receipt_params: ClassVar[int] = 64

    def __init__(self, name: str, settings: ProviderSettings) -> None:
        super().__init__(name, settings)
        assert isinstance(settings, PlivoSettings)
        self.config = settings
        self.messages_url = f"{self.base_url}/v1/Account/{settings.auth_id}/Message/"
        self._headers = {"Authorization": basic_auth(settings.auth_id, secret(settings.auth_token))}

    async def send(self, request: SendRequest) -> SendResult:
        status, headers, body = await self.request(
            "POST", self.messages_url, json=self.payload(request), headers=self._headers
        )
        if not 200 <= status < 300:
            self._raise_error(status, headers, body)
        return self._result(json_object(body))

    def payload(self, request: SendRequest) -> dict[str, str]:
        """The JSON body of the Message API call for ``request``."""
        fields = {
            "src": request.sender or self.config.sender,
            "dst": request.to,
            "text": request.body,
        }
        if self.config.status_callback:
            fields["url"] = with_reference(self.config.status_callback, request.id)
            fields["method"] = "POST"
        return fields

    def _result(self, data: dict[str, Any]) -> SendResult:
        uuids = data.get("message_uuid")
        first = uuids[0] if isinstance(uuids, list) and uuids else None
        if not isinstance(first, str) or not first:
            # Plivo queued the message; a retry could send it twice.
            raise UnconfirmedSend(self.name, "bad-response", "2xx without a message_uuid")
        return SendResult(provider_message_id=first)

    def _raise_error(self, status: int, headers: dict[str, str], body: bytes) -> NoReturn:
        code = f"http-{status}"
        error = json_object(body).get("error") or body[:200].decode(errors="replace")
        message = self._redact(str(error) or f"HTTP {status}")
        self.raise_for_http_status(status, headers, code, message)
        if status == 400 and "dst" in str(error).lower():
            raise RecipientRejected(self.name, code, message)
        raise _BY_STATUS.get(status, PermanentProviderError)(self.name, code, message)

    def _redact(self, message: str) -> str:
        return scrub(message, self.config.auth_token)

    # -- receipts -------------------------------------------------------------------------

    def verify_receipt(self, webhook: Webhook, now: datetime) -> None:
        # V3 signs no time, so ``now`` has nothing to check (replays: module docstring).
        given = webhook.header("X-Plivo-Signature-V3")
        nonce = webhook.header("X-Plivo-Signature-V3-Nonce")
        if not given or not nonce:
            raise BadSignature("plivo callback without X-Plivo-Signature-V3 and its nonce")
        form = _form(webhook) if webhook.method.upper() != "GET" else {}
        expected = v3_signature(
            webhook.method, webhook.url, form, nonce, secret(self.config.auth_token)
        )
        listed = [s.strip() for s in given.split(",")]
        if not any(same(s, expected) for s in listed):
            raise BadSignature("plivo callback signature does not verify")

    def replay_key(self, webhook: Webhook) -> bytes:
        form = _form(webhook) if webhook.method.upper() != "GET" else {}
        return canonical(_signed_url(webhook.method, webhook.url, form))

    def parse_receipts(self, webhook: Webhook) -> list[Receipt]:
        params = _single(_form(webhook)) if webhook.method.upper() != "GET" else {}
        params = params or _single(parse_qs(urlsplit(webhook.url).query))
        status = params.get("Status")
        uuid = params.get("ParentMessageUUID") or params.get("MessageUUID")
        if not status or not uuid:
            return []
        part, parts = _parts(params)
        receipt = Receipt(
            provider_message_id=uuid,
            message_id=_single(parse_qs(urlsplit(webhook.url).query)).get(REFERENCE_PARAM),
            status=STATUSES.get(status, ReceiptStatus.PENDING),
            provider_status=status,
            error_code=None if params.get("ErrorCode", "") in _NO_ERROR else params["ErrorCode"],
            part=part,
            parts=parts,
            at=_first_time(params),
            # TotalAmount is the whole message's charge (Units x TotalRate), repeated in
            # every part's callback; Plivo bills in US dollars and names no currency.
            cost=money(params.get("TotalAmount")),
            currency="USD",
        )
        return [receipt]


def with_reference(url: str, request_id: str) -> str:
    """``url`` with our request id added to its query as ``smsrelay_id``."""
    parts = urlsplit(url)
    query = f"{parts.query}&" if parts.query else ""
    return urlunsplit(parts._replace(query=query + urlencode({REFERENCE_PARAM: request_id})))


def v3_signature(
    method: str, url: str, form: Mapping[str, list[str]], nonce: str, token: str
) -> str:
    """``X-Plivo-Signature-V3`` of a callback (``form``: its POST parameters)."""
    signed = f"{_signed_url(method, url, form)}.{nonce}".encode()
    return hmac_b64(token.encode(), signed)


def _signed_url(method: str, url: str, form: Mapping[str, list[str]]) -> str:
    parts = urlsplit(url)
    base = f"{parts.scheme}://{parts.netloc}{parts.path}"
    query = "&".join(
        f"{name}={value}"
        for name, values in sorted(parse_qs(parts.query, keep_blank_values=True).items())
        for value in sorted(values)
    )
    if method.upper() == "GET" or not form:
        return f"{base}?{query}" if query else base
    params = "".join(
        f"{name}{value}" for name, values in sorted(form.items()) for value in sorted(values)
    )
    return f"{base}?{query}.{params}" if query else f"{base}?{params}"


def _form(webhook: Webhook) -> dict[str, list[str]]:
    return parse_qs(webhook.body.decode(errors="replace"), keep_blank_values=True)


def _single(values: Mapping[str, list[str]]) -> dict[str, str]:
    # The signature sorts a name's values: which one came last is not signed.
    if any(len(set(listed)) > 1 for listed in values.values()):
        raise ValueError("a parameter is given twice")
    return {name: listed[-1] for name, listed in values.items() if listed}


def _parts(params: Mapping[str, str]) -> tuple[int | None, int | None]:
    # PartInfo reads like "1 of 2" where Plivo sends it; Units is the total either way.
    found = _PART_INFO.search(params.get("PartInfo", ""))
    if found:
        return int(found.group(1)), int(found.group(2))
    units = params.get("Units", "")
    return None, int(units) if units.isdigit() else None


def _first_time(params: Mapping[str, str]) -> datetime | None:
    for name in ("DeliveryReportTime", "SentTime", "QueuedTime", "MessageTime"):
        try:
            found = datetime.fromisoformat(params.get(name, ""))
        except ValueError:
            continue
        return found if found.tzinfo else found.replace(tzinfo=UTC)
    return None
