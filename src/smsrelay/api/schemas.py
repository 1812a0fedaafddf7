"""The API's answers, and the request body schema it documents.

``POST /v1/messages`` reads its body itself (to enforce the size limit and validate
exactly as the worker does), so its schema is added to the document by hand, derived
from ``SendRequest``.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel

from smsrelay.models import ReceiptStatus, SendRequest, State
from smsrelay.store import AttemptRecord, MessageRecord
from smsrelay.store.receipts import ReceiptRecord


class Accepted(BaseModel):
    """The request was published to the ``sms`` exchange and the broker confirmed it."""

    id: str


class Attempt(BaseModel):
    """One try at one provider."""

    number: int
    provider: str
    outcome: str
    started_at: datetime
    finished_at: datetime | None
    provider_message_id: str | None
    error_code: str | None
    error_message: str | None


class DeliveryReceipt(BaseModel):
    """One delivery report a provider sent for the message."""

    provider: str
    provider_message_id: str | None
    status: ReceiptStatus
    provider_status: str
    error_code: str | None
    part: int | None
    parts: int | None
    at: datetime | None
    received_at: datetime


class MessageError(BaseModel):
    """Why a message failed."""

    code: str
    message: str


class MessageStatus(BaseModel):
    """A message's state, its attempts and its receipts."""

    id: str
    state: State
    provider: str | None
    provider_message_id: str | None
    segments: int | None
    error: MessageError | None
    possible_duplicate: bool
    created_at: datetime
    updated_at: datetime
    attempts: list[Attempt]
    receipts: list[DeliveryReceipt]


class Health(BaseModel):
    """The process answers."""

    status: Literal["ok"] = "ok"


class Readiness(BaseModel):
    """Each dependency and whether it works: ``broker`` and ``store``."""

    status: Literal["ready", "unready"]
    checks: dict[str, Literal["ok", "failed"]]


def message_status(record: MessageRecord, receipts: list[ReceiptRecord]) -> MessageStatus:
    """The answer of ``GET /v1/messages/{id}``."""
    error = (
        MessageError(code=record.error_code, message=record.error_message or "")
        if record.error_code
        else None
    )
    return MessageStatus(
        id=record.id,
        state=record.state,
        provider=record.provider,
        provider_message_id=record.provider_message_id,
        segments=record.segments,
        error=error,
        possible_duplicate=record.possible_duplicate,
        created_at=record.created_at,
        updated_at=record.updated_at,
        attempts=[_attempt(a) for a in record.attempts],
        receipts=[DeliveryReceipt.model_validate(r, from_attributes=True) for r in receipts],
    )


def _attempt(attempt: AttemptRecord) -> Attempt:
    return Attempt.model_validate(attempt, from_attributes=True)


def send_request_schema() -> tuple[dict[str, Any], dict[str, Any]]:
    """``SendRequest``'s JSON schema as sent on the wire, and the schemas it refers to."""
    schema = SendRequest.model_json_schema(
        by_alias=True, ref_template="#/components/schemas/{model}"
    )
    defs: dict[str, Any] = schema.pop("$defs", {})
    # `country` is derived from `to`; a request that sends it is refused.
    schema["properties"].pop("country", None)
    schema["properties"]["tags"]["maxProperties"] = 16
    return schema, defs
