"""A generic JSON-over-HTTP provider, for in-house gateways that no adapter knows.

Everything about the wire format comes from configuration. A send is one ``method``
(POST or PUT) of ``body_template`` to ``url`` with ``headers``. The template is any JSON
value; in its strings the placeholders ``{id}``, ``{to}``, ``{body}``, ``{from}`` and
``{kind}`` are replaced by the request's values *inside the decoded strings*, so a quote or
backslash in a message cannot break out of its string. A string that is exactly one
placeholder whose value is missing (``"{from}"`` without a sender) becomes ``null``; any
other ``{name}`` is left as it is. The message id is read from the JSON answer at
``message_id_path`` (dots separate keys and list indices: ``data.id``,
``messages.0.id``); without a path, our own id is the provider's.

The answer's HTTP status decides the outcome, in this order:

========================================================  =======================================
when                                                      class
========================================================  =======================================
status in ``success_statuses`` (default 200-299)          success: the id at ``message_id_path``
code at ``error_code_path`` in ``recipient_error_codes``  RecipientRejected
status in ``transient_statuses`` (default 429, 5xx)       RateLimited for 429 (with Retry-After),
                                                          else TransientProviderError
401 or 403, in ``permanent_statuses``                     AuthenticationFailed
status in ``permanent_statuses`` (default 400-499)        PermanentProviderError
any other status                                          PermanentProviderError
========================================================  =======================================

The error's code is the value at ``error_code_path`` (else ``http-<status>``), its text the
value at ``error_message_path`` (else ``HTTP <status>``), with phone numbers masked.

Receipts are JSON (one object or a list of them) posted to smsrelay. A receipt is trusted
only with a configured check, and refused otherwise:

* ``receipt_secret``: the ``signature_header`` (default ``X-Smsrelay-Signature``) carries
  the hex HMAC-SHA256 of the raw body (``sha256=`` before it is allowed), keyed with the
  secret; when ``timestamp_header`` is set, of ``<timestamp>.<raw body>``, so an old body
  cannot be replayed under a fresh timestamp;
* ``receipt_username``/``receipt_password``: HTTP Basic credentials;
* ``timestamp_header``: Unix seconds or ISO 8601, at most ``replay_window`` seconds
  (default 300) from now, else ``StaleReceipt``.

Every comparison runs in constant time. A receipt replayed within the window is refused
by the API's digest of its replay key: what the HMAC covers (the timestamp and the raw
body), or with Basic credentials alone the body as canonical JSON (re-spaced or
reordered, it is the same report). A webhook is read up to 1 MB (a gateway may
batch). Each receipt's fields are read at configurable paths; ``receipt_status_map``
maps the gateway's statuses onto delivered, undelivered, failed or pending (the four
names map onto themselves; anything unknown is pending).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import re
from datetime import UTC, datetime
from typing import Annotated, ClassVar, Literal, NoReturn

from pydantic import BeforeValidator, Field, JsonValue, SecretStr, model_validator

from smsrelay.errors import (
    AuthenticationFailed,
    BadSignature,
    PermanentProviderError,
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
    json_value,
    scrub,
    secret,
)
from smsrelay.providers.webhooks import canonical, canonical_json, check_window, same

_PLACEHOLDER = re.compile(r"\{(id|to|body|from|kind)\}")


def _status_ranges(value: object) -> object:
    # 404, "404" and "500-599" are accepted; each becomes an inclusive (low, high) pair.
    if not isinstance(value, list):
        return value
    return [_status_range(entry) for entry in value]


def _status_range(entry: object) -> object:
    if isinstance(entry, int):
        return (entry, entry)
    if isinstance(entry, str):
        low, _, high = entry.partition("-")
        if not (low.strip().isdigit() and (high or low).strip().isdigit()):
            raise ValueError(f"{entry!r} is not a status or a range like 500-599")
        return (int(low), int(high or low))
    return entry


StatusRanges = Annotated[list[tuple[int, int]], BeforeValidator(_status_ranges)]
"""HTTP statuses as inclusive ranges; configured as ``[404, "500-599"]``."""


class HttpGatewaySettings(ProviderSettings):
    """Where and how to call the gateway, how to read its answers and its receipts.

    Header values are secrets (they often carry an API key): they never show in a repr.
    """

    type: Literal["http"] = "http"
    url: str = Field(pattern=r"^https?://")
    method: Literal["POST", "PUT"] = "POST"
    headers: dict[str, SecretStr] = {}
    body_template: JsonValue = {"id": "{id}", "to": "{to}", "from": "{from}", "body": "{body}"}
    message_id_path: str | None = "id"
    success_statuses: StatusRanges = [(200, 299)]
    transient_statuses: StatusRanges = [(429, 429), (500, 599)]
    permanent_statuses: StatusRanges = [(400, 499)]
    error_code_path: str | None = None
    error_message_path: str | None = None
    recipient_error_codes: list[str] = []
    receipt_secret: SecretStr | None = None
    signature_header: str = "X-Smsrelay-Signature"
    receipt_username: str | None = None
    receipt_password: SecretStr | None = None
    timestamp_header: str | None = None
    replay_window: float = Field(default=300.0, gt=0)
    receipt_message_id_path: str = "id"
    receipt_reference_path: str | None = None
    receipt_status_path: str = "status"
    receipt_status_map: dict[str, ReceiptStatus] = {}
    receipt_error_code_path: str | None = None

    @model_validator(mode="after")
    def _ranges_are_statuses(self) -> HttpGatewaySettings:
        for low, high in self.success_statuses + self.transient_statuses + self.permanent_statuses:
            if not 100 <= low <= high <= 599:
                raise ValueError(f"{low}-{high} is not a range of HTTP statuses")
        self.require_together("receipt_username", "receipt_password")
        return self


class HttpGatewayProvider(HttpProvider):
    """The ``http`` provider."""

    type_name: ClassVar[str] = "http"
    settings_class: ClassVar[type[ProviderSettings]] = HttpGatewaySettings
    default_base_url: ClassVar[str] = ""
    max_receipt_bytes: ClassVar[int] = 1024 * 1024

    def __init__(self, name: str, settings: ProviderSettings) -> None:
        super().__init__(name, settings)
        assert isinstance(settings, HttpGatewaySettings)
        self.config = settings
        self._headers = {"Content-Type": "application/json"}
        self._headers.update({k: secret(v) for k, v in settings.headers.items()})

    async def send(self, request: SendRequest) -> SendResult:
        payload = json.dumps(self.render(request), ensure_ascii=False).encode()
        status, headers, answer = await self.request(
            self.config.method, self.config.url, data=payload, headers=self._headers
        )
        if not _within(status, self.config.success_statuses):
            self._raise_error(status, headers, _json(answer))
        return self._result(request, _json(answer))

    def render(self, request: SendRequest) -> JsonValue:
        """``body_template`` with the request's values in place of its placeholders."""
        values = {
            "id": request.id,
            "to": request.to,
            "body": request.body,
            "from": request.sender or self.config.sender,
            "kind": request.kind.value,
        }
        return _fill(self.config.body_template, values)

    def _result(self, request: SendRequest, answer: object) -> SendResult:
        if self.config.message_id_path is None:
            return SendResult(provider_message_id=request.id)
        message_id = _text(dig(answer, self.config.message_id_path))
        if not message_id:
            # The gateway took the message; a retry could send it twice.
            problem = f"success without an id at {self.config.message_id_path!r}"
            raise UnconfirmedSend(self.name, "bad-response", problem)
        return SendResult(provider_message_id=message_id)

    def _raise_error(self, status: int, headers: dict[str, str], answer: object) -> NoReturn:
        code = _text(dig(answer, self.config.error_code_path)) or f"http-{status}"
        text = _text(dig(answer, self.config.error_message_path)) or f"HTTP {status}"
        message = scrub(text)
        if code in self.config.recipient_error_codes:
            raise RecipientRejected(self.name, code, message)
        if _within(status, self.config.transient_statuses):
            self.raise_for_http_status(status, headers, code, message)
            raise TransientProviderError(self.name, code, message)
        if status in (401, 403) and _within(status, self.config.permanent_statuses):
            raise AuthenticationFailed(self.name, code, message)
        raise PermanentProviderError(self.name, code, message)

    # -- receipts ---------------------------------------------------------------------------

    def verify_receipt(self, webhook: Webhook, now: datetime) -> None:
        config = self.config
        if config.receipt_secret is None and config.receipt_password is None:
            super().verify_receipt(webhook, now)
        if config.receipt_secret is not None:
            self._check_hmac(webhook, secret(config.receipt_secret).encode())
        if config.receipt_password is not None:
            self._check_basic(webhook)
        if config.timestamp_header is not None:
            self._check_timestamp(webhook, now)

    def _check_hmac(self, webhook: Webhook, key: bytes) -> None:
        given = (webhook.header(self.config.signature_header) or "").strip().lower()
        given = given.removeprefix("sha256=")
        if not given:
            raise BadSignature(f"no {self.config.signature_header} header")
        signed = webhook.body
        if self.config.timestamp_header is not None:
            stamp = webhook.header(self.config.timestamp_header)
            if not stamp:
                raise BadSignature(f"no {self.config.timestamp_header} header")
            signed = stamp.encode() + b"." + webhook.body
        expected = hmac.new(key, signed, hashlib.sha256).hexdigest()
        if not same(given, expected):
            raise BadSignature(f"{self.config.signature_header} does not verify")

    def _check_basic(self, webhook: Webhook) -> None:
        username = str(self.config.receipt_username)  # set whenever the password is
        expected = basic_auth(username, secret(self.config.receipt_password))
        given = webhook.header("Authorization") or ""
        if not same(given, expected):
            raise BadSignature("receipt Basic credentials do not match")

    def _check_timestamp(self, webhook: Webhook, now: datetime) -> None:
        assert self.config.timestamp_header is not None
        stamp = _parse_time(webhook.header(self.config.timestamp_header) or "")
        if stamp is None:
            raise BadSignature(f"no valid {self.config.timestamp_header} header")
        check_window(stamp.timestamp(), now, self.config.replay_window, "receipt")

    def replay_key(self, webhook: Webhook) -> bytes:
        if self.config.receipt_secret is not None:
            stamp = webhook.header(self.config.timestamp_header or "") or ""
            return canonical(stamp, webhook.body)
        try:
            return canonical_json(webhook.body)
        except ValueError:
            return canonical(webhook.body)  # not JSON: it holds no receipt either

    def parse_receipts(self, webhook: Webhook) -> list[Receipt]:
        data = _json(webhook.body)
        items = data if isinstance(data, list) else [data]
        receipts = (self._receipt(item) for item in items)
        return [receipt for receipt in receipts if receipt is not None]

    def _receipt(self, item: object) -> Receipt | None:
        config = self.config
        provider_id = _text(dig(item, config.receipt_message_id_path))
        reference = _text(dig(item, config.receipt_reference_path))
        raw_status = _text(dig(item, config.receipt_status_path))
        if not (provider_id or reference) or raw_status is None:
            return None
        return Receipt(
            provider_message_id=provider_id,
            message_id=reference,
            status=self._status(raw_status),
            provider_status=raw_status,
            error_code=_text(dig(item, config.receipt_error_code_path)),
        )

    def _status(self, raw: str) -> ReceiptStatus:
        mapped = self.config.receipt_status_map.get(raw)
        if mapped is not None:
            return mapped
        try:
            return ReceiptStatus(raw.lower())
        except ValueError:
            return ReceiptStatus.PENDING


def dig(data: object, path: str | None) -> object:
    """The value at a dotted ``path`` (keys and list indices) in decoded JSON, or None."""
    if path is None:
        return None
    for part in path.split("."):
        if isinstance(data, dict):
            data = data.get(part)
        elif isinstance(data, list) and part.isdigit() and int(part) < len(data):
            data = data[int(part)]
        else:
            return None
    return data


def _fill(template: JsonValue, values: dict[str, str | None]) -> JsonValue:
    if isinstance(template, str):
        whole = _PLACEHOLDER.fullmatch(template)
        if whole and values[whole.group(1)] is None:
            return None
        return _PLACEHOLDER.sub(lambda m: values[m.group(1)] or "", template)
    if isinstance(template, list):
        return [_fill(item, values) for item in template]
    if isinstance(template, dict):
        return {key: _fill(item, values) for key, item in template.items()}
    return template


def _within(status: int, ranges: list[tuple[int, int]]) -> bool:
    return any(low <= status <= high for low, high in ranges)


def _json(raw: bytes) -> object:
    try:
        return json_value(raw) if raw else None
    except ValueError:
        return None


def _text(value: object) -> str | None:
    # Ids and codes arrive as strings or numbers; booleans and objects are not ids.
    if isinstance(value, bool) or value is None:
        return None
    return str(value) if isinstance(value, str | int | float) else None


def _parse_time(value: str) -> datetime | None:
    value = value.strip()
    try:
        if re.fullmatch(r"\d+(\.\d+)?", value):
            return datetime.fromtimestamp(float(value), UTC)
        parsed = datetime.fromisoformat(value)
    except (ValueError, OverflowError):
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)
