"""The provider interface, its settings base, and the shared HTTP plumbing.

A provider turns a validated ``SendRequest`` into a ``SendResult`` or raises one of
the ``ProviderError`` subclasses from ``smsrelay.errors``. Nothing else in smsrelay
knows a provider's wire format.
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from types import SimpleNamespace
from typing import Any, ClassVar, NoReturn, Protocol

import aiohttp
from pydantic import BaseModel, ConfigDict, SecretStr

from smsrelay import phone, telemetry
from smsrelay.errors import (
    BadSignature,
    MalformedReceipt,
    OutcomeUnknown,
    PermanentProviderError,
    ProviderError,
    RateLimited,
    TransientProviderError,
)
from smsrelay.limits.settings import RateLimit
from smsrelay.models import BodyEncoding, Receipt, SendRequest, SendResult


class ProviderSettings(BaseModel):
    """Settings every provider takes; each provider subclasses it with its own keys."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    type: str
    base_url: str = ""
    timeout: float = 10.0
    max_connections: int = 1000
    sender: str | None = None
    # `smart`: fold look-alikes to GSM-7 unless a request says `exact` (smsrelay.encoding.smart).
    encoding: BodyEncoding = BodyEncoding.EXACT
    # When a request left and no answer came (OutcomeUnknown), may the message be tried
    # again (next provider, later round)? Each such retry is flagged possible_duplicate.
    retry_unknown_outcome: bool = False
    # Sends per second (and per sender) shared by every worker (smsrelay.limits.rates).
    rate_limit: RateLimit | None = None

    def require_any(self, *names: str) -> None:
        """For a model validator: raise ``ValueError`` unless one of ``names`` is set."""
        if not any(getattr(self, name) for name in names):
            raise ValueError(f"{self.type} needs {' or '.join(names)}")

    def require_together(self, *names: str) -> None:
        """For a model validator: raise ``ValueError`` when only some of ``names`` are set."""
        given = [getattr(self, name) is not None for name in names]
        if any(given) and not all(given):
            raise ValueError(f"{' and '.join(names)} go together")


@dataclass(frozen=True)
class Webhook:
    """An incoming HTTP request as a provider sent it, before anything trusts it.

    ``url`` is the full URL the provider called (signature schemes sign it);
    ``headers`` has lower-cased names.
    """

    method: str
    url: str
    headers: Mapping[str, str]
    body: bytes
    query: Mapping[str, str] = field(default_factory=dict)

    def header(self, name: str) -> str | None:
        """A header's value by case-insensitive name."""
        return self.headers.get(name.lower())


class ReceiptSink(Protocol):
    """Where a provider hands receipts that reach it over its own link (SMPP ``deliver_sm``).

    The worker wires one in at start (``Provider.start``); it applies receipts exactly as
    ``POST /v1/receipts`` does: kept, matched, the state settled, events published.
    """

    async def deliver(self, provider: str, digest: str, receipts: Sequence[Receipt]) -> None:
        """Apply ``receipts``; a ``digest`` seen before is a replay (``StaleReceipt``).

        A receipt the store already holds is dropped. Raises when they could not be
        stored (the caller may retry: the events of a stored batch wait in the outbox).
        """


class Provider(ABC):
    """One configured SMS provider instance, named in the routing table.

    Receipts, in this order: ``check_receipt_limits`` refuses a webhook larger than the
    provider ever sends (cheap, before anything else reads it); ``verify_receipt``
    checks its authenticity with the provider's own scheme and raises
    ``BadSignature``/``StaleReceipt``; only then does ``parse_receipts`` read it, and
    ``replay_key`` names what its signature covers. Every step is linear in the
    webhook's size. A provider without receipts refuses every webhook.
    """

    type_name: ClassVar[str]
    settings_class: ClassVar[type[ProviderSettings]]
    # What the provider's receipts can weigh at most (see each module's docstring): the
    # API reads no more than ``max_receipt_bytes`` of a body, and a form or query with
    # more than ``max_receipt_params`` fields is refused before its signature is checked.
    max_receipt_bytes: ClassVar[int] = 64 * 1024
    max_receipt_params: ClassVar[int] = 64
    # The headers that authenticate a receipt, for the default ``replay_key``.
    signature_headers: tuple[str, ...] = ()

    def __init__(self, name: str, settings: ProviderSettings) -> None:
        self.name = name
        self.settings = settings

    @abstractmethod
    async def send(self, request: SendRequest) -> SendResult:
        """Hand ``request`` to the provider, or raise a ``ProviderError``."""

    async def start(self, receipts: ReceiptSink) -> None:  # noqa: B027 - optional hook
        """Open long-lived links (SMPP binds) before the worker takes messages.

        ``receipts`` takes the receipts that arrive over those links.
        """

    async def close(self) -> None:  # noqa: B027 - optional hook, most providers hold nothing
        """Release connections; the provider is not used afterwards."""

    def verify_receipt(self, webhook: Webhook, now: datetime) -> None:
        """Raise ``ReceiptError`` unless ``webhook`` provably comes from the provider.

        ``now`` is passed in so replay windows are testable.
        """
        raise BadSignature(f"{self.type_name} does not send receipts to smsrelay")

    def parse_receipts(self, webhook: Webhook) -> list[Receipt]:
        """The delivery reports in a verified webhook (may be several, or none)."""
        return []

    def check_receipt_limits(self, webhook: Webhook) -> None:
        """Raise ``MalformedReceipt`` when the query or a form body has too many fields.

        Counting separators is linear and reads nothing else; the body's size was
        bounded by ``max_receipt_bytes`` as it was read.
        """
        form = "form" in (webhook.header("content-type") or "")
        fields = [webhook.url.partition("?")[2].encode(), webhook.body if form else b""]
        for text in fields:
            if text and text.count(b"&") + 1 > self.max_receipt_params:
                raise MalformedReceipt(
                    f"{self.type_name} receipts carry at most {self.max_receipt_params} fields"
                )

    def replay_key(self, webhook: Webhook) -> bytes:
        """What a verified webhook's signature covers, in one canonical form.

        The API refuses a webhook whose key it has accepted before (a replay): any
        change a replayer can make without breaking the signature (reordered or
        percent-encoded parameters, another HTTP method, a header's case, unused
        base64 bits) must leave the key unchanged, and the parsed receipts must depend
        on nothing outside it. This default keys on the ``signature_headers`` and the
        body (or a GET's query); providers whose scheme canonicalises override it.
        """
        key = hashlib.sha256()
        for name in sorted({n.lower() for n in self.signature_headers}):
            value = webhook.header(name) or ""
            key.update(f"{name}:{len(value)}:{value}\n".encode())
        if webhook.method.upper() == "GET":
            query = webhook.url.partition("?")[2]
            key.update(f"?{len(query)}:{query}\n".encode())
        key.update(webhook.body)
        return key.digest()


class HttpProvider(Provider):
    """A provider reached over HTTP through one pooled aiohttp session."""

    default_base_url: ClassVar[str]

    def __init__(self, name: str, settings: ProviderSettings) -> None:
        super().__init__(name, settings)
        self.base_url = (settings.base_url or self.default_base_url).rstrip("/")
        self._session: aiohttp.ClientSession | None = None

    @property
    def session(self) -> aiohttp.ClientSession:
        # Created lazily so that it binds to the running event loop.
        if self._session is None:
            trace = aiohttp.TraceConfig()
            trace.on_request_headers_sent.append(_request_left)
            self._session = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(limit=self.settings.max_connections),
                timeout=aiohttp.ClientTimeout(total=self.settings.timeout),
                trace_configs=[trace],
            )
        return self._session

    async def request(
        self, method: str, url: str, **kwargs: Any
    ) -> tuple[int, dict[str, str], bytes]:
        """Perform one call in a CLIENT span; see ``_request``.

        The trace context is not sent to the provider: it is a third party, and some
        sign the headers they are given.
        """
        with telemetry.calling(self.name, method, url):
            answer = await self._request(method, url, **kwargs)
            telemetry.answered(answer[0])
            return answer

    async def _request(
        self, method: str, url: str, **kwargs: Any
    ) -> tuple[int, dict[str, str], bytes]:
        """Perform one call; network failures become ``TransientProviderError``.

        A failure once the request has left (its headers were written: a read timeout,
        a reset) is ``OutcomeUnknown``: the provider may have taken the message. Before
        that (DNS, connect refused or timed out, waiting for a pooled connection),
        nothing reached the provider and a retry anywhere is safe.
        """
        progress = _Progress()
        try:
            async with self.session.request(
                method, url, trace_request_ctx=progress, **kwargs
            ) as resp:
                body = await resp.read()
                return resp.status, dict(resp.headers), body
        except (TimeoutError, aiohttp.ClientError, OSError) as exc:
            detail = type(exc).__name__ + ": " + str(exc)
            if isinstance(exc, TimeoutError) and not str(exc):
                detail = f"no answer within {self.settings.timeout:g} s"
            if progress.left:
                raise OutcomeUnknown(self.name, "no-answer", detail) from exc
            raise TransientProviderError(self.name, "network", detail) from exc

    def raise_for_http_status(
        self, status: int, headers: dict[str, str], code: str, message: str
    ) -> None:
        """Map the HTTP statuses every provider shares: 429 and 5xx are transient."""
        if status == 429:
            raise RateLimited(self.name, code, message, retry_after=_retry_after(headers))
        if status >= 500:
            raise TransientProviderError(self.name, code, message)

    def raise_for_code(
        self,
        error_class: type[ProviderError] | None,
        status: int,
        headers: dict[str, str],
        code: str,
        message: str,
        by_status: Mapping[int, type[ProviderError]],
    ) -> NoReturn:
        """Raise what a provider's error table says about ``code`` (``error_class``).

        A ``RateLimited`` row is raised as a 429 would be (with ``Retry-After``). A code
        not in the table (None) falls back on the HTTP status: 429 and 5xx as for every
        provider, then ``by_status``, else ``PermanentProviderError``.
        """
        if error_class is None or error_class is RateLimited:
            self.raise_for_http_status(429 if error_class else status, headers, code, message)
            error_class = by_status.get(status, PermanentProviderError)
        raise error_class(self.name, code, message)

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None


@dataclass
class _Progress:
    """How far one call got; set by the session's trace hook."""

    left: bool = False


async def _request_left(
    _: aiohttp.ClientSession,
    context: SimpleNamespace,
    __: aiohttp.TraceRequestHeadersSentParams,
) -> None:
    progress = context.trace_request_ctx
    if isinstance(progress, _Progress):
        progress.left = True


def _retry_after(headers: dict[str, str]) -> float | None:
    value = headers.get("Retry-After") or headers.get("retry-after")
    try:
        return float(value) if value else None
    except ValueError:
        return None


_PHONE_LIKE = re.compile(r"\+?\d[\d ()-]{6,}\d")
# A NUL in a provider's error text would make PostgreSQL refuse the attempt's record.
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
MAX_ERROR_TEXT = 300


def scrub(message: str, *secrets: SecretStr | None) -> str:
    """Provider error text made fit for logs and events.

    Secrets go first (masking digits inside a token would hide it from the replace),
    then anything that looks like a phone number is masked; the length is capped and
    control characters become spaces.
    """
    for value in secrets:
        plain = secret(value)
        if plain:
            message = message.replace(plain, "***")
    message = _CONTROL.sub(" ", message[:MAX_ERROR_TEXT])
    return _PHONE_LIKE.sub(lambda m: phone.mask(m.group()), message)


def secret(value: SecretStr | None) -> str:
    """The plain text of a configured secret (only adapters call this)."""
    return value.get_secret_value() if value is not None else ""


def basic_auth(username: str, password: str) -> str:
    """An HTTP Basic ``Authorization`` value.

    Built by hand: aiohttp.BasicAuth is deprecated, encode_basic_auth is 3.14+ only.
    """
    return "Basic " + base64.b64encode(f"{username}:{password}".encode()).decode()


# -- reading provider answers and reports ------------------------------------------------


def json_object(body: bytes) -> dict[str, Any]:
    """``body`` as a JSON object, or ``{}`` when it is not one (answers are read leniently)."""
    try:
        data = json_value(body)
    except ValueError:
        return {}
    return data if isinstance(data, dict) else {}


def json_value(body: bytes) -> Any:
    """``body`` decoded as JSON; ``ValueError`` when it is not JSON or nests too deep.

    The parser recurses once per level: deep nesting raises ``RecursionError`` after
    about a thousand levels (linear work), which is an unreadable body, not a crash.
    """
    try:
        return json.loads(body)
    except RecursionError:
        raise ValueError("JSON nested too deep") from None


def dicts(value: object) -> list[dict[str, Any]]:
    """The objects in a JSON list (anything else in it is dropped; a non-list gives [])."""
    return [v for v in value if isinstance(v, dict)] if isinstance(value, list) else []


def str_or_none(value: object) -> str | None:
    """An id or code sent as a string or an integer, as text; None when absent or empty."""
    return str(value) if isinstance(value, str | int) and value != "" else None


def json_int(value: object) -> int | None:
    """A count sent as a JSON integer (not a boolean, not a string), else None."""
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def text_int(value: object) -> int | None:
    """A count sent as an integer or as its text (``"2"``), else None."""
    try:
        return int(value) if isinstance(value, int | str) else None
    except ValueError:
        return None


_MONEY = re.compile(r"-?[0-9]{1,12}(\.[0-9]{1,10})?")
_CURRENCY = re.compile(r"[A-Z]{3}")


def money(value: object) -> Decimal | None:
    """A charge as a provider writes it ("-0.00750", "0.0333", 0.05), positive; else None.

    Twilio writes charges negative; the sign is dropped. Anything else (a word, an
    exponent, a huge number) is no cost at all rather than a wrong one.
    """
    if isinstance(value, bool) or not isinstance(value, str | int | float):
        return None
    text = value if isinstance(value, str) else repr(value)
    if not _MONEY.fullmatch(text):
        return None
    return abs(Decimal(text))


def currency_code(value: object) -> str | None:
    """An ISO 4217 code ("USD"; "usd" is upper-cased), else None."""
    if not isinstance(value, str):
        return None
    code = value.strip().upper()
    return code if _CURRENCY.fullmatch(code) else None


def iso_datetime(value: object) -> datetime | None:
    """An ISO 8601 string as a datetime (as written: naive stays naive), else None."""
    try:
        return datetime.fromisoformat(value) if isinstance(value, str) else None
    except ValueError:
        return None
