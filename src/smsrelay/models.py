"""The data that travels through smsrelay: request, send result, status, event.

``SendRequest`` is the v1 wire contract (``docs/asyncapi.yaml``): producers depend on
its field names, so they change only with a new version.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import re
from datetime import UTC, datetime
from decimal import Decimal
from enum import StrEnum
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from smsrelay import phone
from smsrelay.errors import InvalidRequest

MAX_REQUEST_BYTES = 64 * 1024
ID_PATTERN = r"^[A-Za-z0-9._:-]{1,64}$"
# A receipt deadline longer than an hour is no help to someone waiting for a login code.
MAX_RESEND_AFTER = 3600


class State(StrEnum):
    """A message's state; each is also the last word of its event routing key."""

    ACCEPTED = "accepted"
    SENT = "sent"
    DELIVERED = "delivered"
    UNDELIVERED = "undelivered"
    FAILED = "failed"
    REJECTED = "rejected"
    EXPIRED = "expired"

    @property
    def final(self) -> bool:
        """True once the worker will not send this message again."""
        return self is not State.ACCEPTED


class Kind(StrEnum):
    """What the message is for; OTP bodies are never stored."""

    OTP = "otp"
    TRANSACTIONAL = "transactional"
    MARKETING = "marketing"


class BodyEncoding(StrEnum):
    """How a body may be sent: exactly as written, or with look-alikes folded to GSM-7."""

    EXACT = "exact"
    SMART = "smart"


# C0 and C1 control characters and DEL: no provider carries them (a NUL cannot even
# be stored in PostgreSQL). A body keeps line feed, carriage return and tab: GSM 03.38
# has LF and CR, and a message that needs UCS-2 anyway carries a tab.
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")
_BODY_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f]")


def _refuse(pattern: re.Pattern[str], value: str) -> str:
    found = pattern.search(value)
    if found is not None:
        char = found.group()
        raise ValueError(f"control character U+{ord(char):04X} at position {found.start()}")
    return value


def _body_text(value: str) -> str:
    return _refuse(_BODY_CONTROL, value)


def _plain_text(value: str | None) -> str | None:
    return value if value is None else _refuse(_CONTROL, value)


def _tags_limit(tags: dict[str, str]) -> dict[str, str]:
    if len(tags) > 16:
        raise ValueError("at most 16 entries")
    for key, value in tags.items():
        try:
            _refuse(_CONTROL, key)
            _refuse(_CONTROL, value)
        except ValueError as exc:
            raise ValueError(f"{key!r}: {exc}") from None
    return tags


class SendRequest(BaseModel):
    """One SMS to send, as a producer publishes it (v1)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    id: Annotated[str, Field(pattern=ID_PATTERN)]
    to: str
    body: Annotated[str, Field(min_length=1, max_length=1600), AfterValidator(_body_text)]
    region: Annotated[str | None, Field(pattern=r"^[A-Za-z]{2}$")] = None
    sender: Annotated[
        str | None, Field(alias="from", min_length=1, max_length=32), AfterValidator(_plain_text)
    ] = None
    kind: Kind = Kind.TRANSACTIONAL
    expires_at: AwareDatetime | None = None
    tags: Annotated[dict[str, str], AfterValidator(_tags_limit)] = Field(default_factory=dict)
    # Absent: the provider's `encoding` setting decides (smsrelay.encoding.smart).
    encoding: BodyEncoding | None = None
    # OTP only: seconds after the send without a delivered receipt before the same body
    # goes once more through the route's next provider (smsrelay.otp.resend_deadline).
    # Absent: the route's ``resend_after`` decides (none: never resent). Not in the digest.
    resend_after: Annotated[
        int | None,
        Field(
            ge=1,
            le=MAX_RESEND_AFTER,
            description=(
                'kind "otp" only: seconds after the send without a delivered receipt '
                "before the same body goes once more through the route's next provider "
                "(at most resend.max_resends times; the resend's event carries resend: n)"
            ),
        ),
    ] = None
    # Filled in by validation from `to`/`region`: not part of the wire format.
    country: Annotated[str, Field(exclude=True)] = ""

    @model_validator(mode="before")
    @classmethod
    def _reject_internal(cls, data: Any) -> Any:
        if isinstance(data, dict) and "country" in data:
            raise ValueError('unknown field "country"')
        return data

    @model_validator(mode="after")
    def _resend_for_otp(self) -> SendRequest:
        if self.resend_after is not None and self.kind is not Kind.OTP:
            raise ValueError('field "resend_after": only a kind "otp" message is resent')
        return self

    @model_validator(mode="after")
    def _normalise_to(self) -> SendRequest:
        try:
            recipient = phone.normalise(self.to, self.region)
        except ValueError as exc:
            raise ValueError(f'field "to": {exc}') from None
        object.__setattr__(self, "to", recipient.e164)
        object.__setattr__(self, "country", recipient.country)
        object.__setattr__(self, "region", None)
        return self

    def is_expired(self, now: datetime | None = None) -> bool:
        """True when ``expires_at`` has passed and the message must never be sent."""
        return self.expires_at is not None and (now or datetime.now(UTC)) >= self.expires_at

    def to_wire(self) -> bytes:
        """The request as producers publish it."""
        return self.model_dump_json(by_alias=True, exclude_none=True).encode()

    def digest(self, key: bytes | None = None) -> str:
        """What defines the message, hashed: one id with one digest is one message.

        Covers ``to`` (as E.164, so a national number and its E.164 form are the same
        message), ``body``, ``from``, ``kind``, ``expires_at`` (as an instant) and
        ``tags``; not ``id`` or ``region``. An OTP's body (the code) is covered only with
        ``key``, as an HMAC: an unkeyed hash of a six-digit code is the code itself to
        anyone who reads the store.
        """
        expires = self.expires_at.astimezone(UTC).isoformat() if self.expires_at else None
        body = self.body
        if self.kind is Kind.OTP:
            body = hmac.new(key, body.encode(), hashlib.sha256).hexdigest() if key else ""
        tags = sorted(self.tags.items())
        canonical = [self.to, body, self.sender, self.kind.value, expires, tags]
        text = json.dumps(canonical, ensure_ascii=False, separators=(",", ":"))
        return hashlib.sha256(text.encode()).hexdigest()


def _describe(err: ValidationError) -> str:
    first = err.errors()[0]
    loc = ".".join(str(p) for p in first["loc"])
    msg = first["msg"].removeprefix("Value error, ")
    if first["type"] == "extra_forbidden":
        return f'unknown field "{loc}"'
    if first["type"] == "missing":
        return f'field "{loc}": required'
    if not loc or msg.startswith("field "):
        return msg
    return f'field "{loc}": {msg}'


def parse_request(raw: bytes) -> SendRequest:
    """Decode and validate a wire request, or raise ``InvalidRequest`` with a plain reason."""
    if len(raw) > MAX_REQUEST_BYTES:
        raise InvalidRequest(f"request is {len(raw)} bytes, the limit is {MAX_REQUEST_BYTES}")
    return validate_request(decode_json(raw))


def decode_json(raw: bytes) -> object:
    """Untrusted bytes as JSON, or ``InvalidRequest``; callers bound ``raw``'s size first.

    The parse is linear in the size; nesting is bounded by the interpreter's recursion
    limit, whose ``RecursionError`` becomes a refusal like any other bad JSON.
    """
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise InvalidRequest(f"body is not valid UTF-8 at byte {exc.start}") from None
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise InvalidRequest(f"invalid json at line {exc.lineno} col {exc.colno}") from None
    except RecursionError:
        raise InvalidRequest("invalid json: nested too deeply") from None


def validate_request(data: object) -> SendRequest:
    """Validate already-decoded JSON, or raise ``InvalidRequest``."""
    if not isinstance(data, dict):
        raise InvalidRequest(f"request must be a JSON object, got {_json_type(data)}")
    try:
        return SendRequest.model_validate(data)
    except ValidationError as exc:
        raise InvalidRequest(_describe(exc)) from None


def salvage_id(raw: bytes) -> str | None:
    """The ``id`` of a request that may be invalid, when it can be read and is well formed.

    Lets a rejection or a dead letter be matched to what its producer sent.
    """
    if len(raw) > MAX_REQUEST_BYTES:  # not worth parsing megabytes for an id
        return None
    try:
        data = decode_json(raw)
    except InvalidRequest:
        return None
    value = data.get("id") if isinstance(data, dict) else None
    return value if isinstance(value, str) and is_valid_id(value) else None


def is_valid_id(value: str) -> bool:
    """True when ``value`` can be a message id (``ID_PATTERN``)."""
    return re.fullmatch(ID_PATTERN, value) is not None


def _json_type(value: object) -> str:
    names = {list: "array", str: "string", bool: "boolean", type(None): "null"}
    return names.get(type(value), "number")


class SendResult(BaseModel):
    """What a provider said when it took a message."""

    model_config = ConfigDict(frozen=True)

    provider_message_id: str
    segments: int | None = None
    # What the provider says it charged for this message, where its answer tells
    # (Twilio's and Vonage's ``price``, Plivo's ``TotalAmount``…): positive, ISO 4217.
    cost: Decimal | None = None
    currency: str | None = None


class ReceiptStatus(StrEnum):
    """A provider's delivery report, normalised."""

    DELIVERED = "delivered"
    UNDELIVERED = "undelivered"
    FAILED = "failed"
    # Intermediate reports (queued, sent to carrier, buffered): kept, state unchanged.
    PENDING = "pending"


class Receipt(BaseModel):
    """One delivery report from a provider, matched to a message by id."""

    model_config = ConfigDict(frozen=True)

    provider_message_id: str | None = None
    # Our id, where the provider echoes the client reference we sent.
    message_id: str | None = None
    status: ReceiptStatus
    provider_status: str
    error_code: str | None = None
    # Multipart messages report per part; a message is delivered when all parts are.
    part: int | None = None
    parts: int | None = None
    at: datetime | None = None
    # What the provider says the whole message cost, where its report tells (Plivo's
    # ``TotalAmount``, Infobip's ``price``, Telnyx's ``cost``…). Not trusted further
    # than its shape: anything but a plain non-negative amount or a three-letter code
    # is no cost at all (None), never an error.
    cost: Decimal | None = None
    currency: str | None = None

    @field_validator("cost", mode="before")
    @classmethod
    def _plain_amount(cls, value: object) -> Decimal | None:
        if isinstance(value, Decimal) and value.is_finite() and value >= 0:
            text = str(value)
        elif isinstance(value, str):
            text = value
        else:
            return None
        return Decimal(text) if _RECEIPT_COST.fullmatch(text) else None

    @field_validator("currency", mode="before")
    @classmethod
    def _currency_code(cls, value: object) -> str | None:
        return value if isinstance(value, str) and _RECEIPT_CURRENCY.fullmatch(value) else None


_RECEIPT_COST = re.compile(r"[0-9]{1,12}(\.[0-9]{1,10})?")
_RECEIPT_CURRENCY = re.compile(r"[A-Z]{3}")


class EventError(BaseModel):
    """The error carried by a status event."""

    code: str
    message: str
    retryable: bool


class StatusEvent(BaseModel):
    """Published to ``sms.events`` with routing key ``sms.status.<state>``."""

    model_config = ConfigDict(frozen=True)

    id: str
    state: State
    provider: str | None = None
    provider_message_id: str | None = None
    attempt: int = 0
    error: EventError | None = None
    segments: int | None = None
    tags: dict[str, str] = Field(default_factory=dict)
    at: datetime
    possible_duplicate: bool = False
    # 0: the message's own send (and everything after it); n: the event of its n-th
    # receipt-deadline resend (smsrelay.otp.resend_deadline).
    resend: int = 0

    @property
    def routing_key(self) -> str:
        """``sms.status.<state>``."""
        return f"sms.status.{self.state.value}"


# "interrupted": a worker died mid-attempt; the provider may or may not have sent it.
# "unknown": the request left but no answer came (OutcomeUnknown): the same doubt.
AttemptOutcome = Literal["started", "sent", "failed", "transient", "interrupted", "unknown"]
