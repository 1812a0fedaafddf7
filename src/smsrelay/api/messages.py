"""``POST /v1/messages`` (publish a v1 request) and ``GET /v1/messages/{id}`` (its story)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Path, Request

from smsrelay.api.auth import require_api_key
from smsrelay.api.body import read_body
from smsrelay.api.broker import BrokerUnavailable
from smsrelay.api.context import ApiContext, get_context
from smsrelay.api.errors import documented, error_response, field_of
from smsrelay.api.schemas import Accepted, MessageStatus, message_status
from smsrelay.dispatch import id_conflict_reason
from smsrelay.errors import InvalidRequest
from smsrelay.logging import get_logger
from smsrelay.models import (
    ID_PATTERN,
    MAX_REQUEST_BYTES,
    SendRequest,
    decode_json,
    validate_request,
)
from smsrelay.store import Acceptance, MessageRecord

log = get_logger(__name__)

RETRY_LATER = {"Retry-After": "5"}

router = APIRouter(tags=["messages"], dependencies=[Depends(require_api_key)])

REQUEST_BODY: dict[str, Any] = {
    "requestBody": {
        "required": True,
        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/SendRequest"}}},
    }
}


@router.post(
    "/v1/messages",
    operation_id="sendMessage",
    status_code=202,
    response_model=Accepted,
    responses=documented(400, 401, 409, 413, 422, 503),
    openapi_extra=REQUEST_BODY,
    summary="Send an SMS",
)
async def send_message(request: Request, ctx: ApiContext = Depends(get_context)) -> Any:
    """Validate a v1 request as the worker does, record it, publish it to `sms` (202 on confirm).

    The same id with the same request again is 202 (a duplicate, sent once); the same
    id with a different request is 409.
    """
    raw = await read_body(request, MAX_REQUEST_BYTES)
    if raw is None:
        return error_response(413, f"the request is over {MAX_REQUEST_BYTES} bytes")
    try:
        data = decode_json(raw)
    except InvalidRequest as exc:
        return error_response(400, f"the body is not JSON: {exc.reason}")
    try:
        message = validate_request(data)
    except InvalidRequest as exc:
        return error_response(422, exc.reason, field=field_of(exc.reason))
    return await _accept(ctx, message)


async def _accept(ctx: ApiContext, message: SendRequest) -> Any:
    # Recorded before publishing, so that a GET right after the 202 finds it.
    try:
        known = await ctx.store.accept(message, message.digest(ctx.settings.request_digest_key()))
    except Exception as exc:  # any driver error: the promise cannot be recorded
        log.warning("accept_failed", id=message.id, error=type(exc).__name__)
        return error_response(
            503, "the store did not take the request; retry later", headers=RETRY_LATER
        )
    if known is Acceptance.CONFLICT:
        ctx.metrics.id_conflicts.inc()
        log.info("id_conflict", id=message.id)
        return error_response(409, id_conflict_reason(message.id), field="id")
    if known is Acceptance.KNOWN:  # a worker has it: publishing again would change nothing
        ctx.metrics.duplicates.inc()
        return Accepted(id=message.id)
    try:
        await ctx.publisher.publish_request(message)
    except BrokerUnavailable as exc:
        log.warning("publish_failed", id=message.id, error=str(exc))
        if known is Acceptance.NEW:
            await _withdraw(ctx, message.id)
        return error_response(
            503, "the broker did not take the request; retry later", headers=RETRY_LATER
        )
    return Accepted(id=message.id)


async def _withdraw(ctx: ApiContext, message_id: str) -> None:
    """Forget the record of a request that was not published (the caller was told 503)."""
    try:
        await ctx.store.withdraw(message_id)
    except Exception as exc:  # left as accepted: a retry of the request publishes it
        log.warning("withdraw_failed", id=message_id, error=type(exc).__name__)


@router.get(
    "/v1/messages/{message_id}",
    operation_id="getMessage",
    response_model=MessageStatus,
    responses=documented(401, 404, 422),
    summary="A message's state, attempts and receipts",
)
async def get_message(
    message_id: Annotated[str, Path(pattern=ID_PATTERN)], ctx: ApiContext = Depends(get_context)
) -> Any:
    """The message's state, every attempt and every delivery receipt (404 when unknown).

    A message is known from the moment `POST /v1/messages` answered 202: `accepted`,
    with no attempt until a worker takes it.
    """
    record = await ctx.store.get(message_id)
    if record is None:
        return error_response(404, f"no message with id {message_id!r}")
    record = await _settle_receipts(ctx, record)
    return message_status(record, await ctx.receipts.receipts_for(message_id))


async def _settle_receipts(ctx: ApiContext, record: MessageRecord) -> MessageRecord:
    """Apply receipts that overtook the worker's record of the send (see ReceiptStore)."""
    provider, pmid = record.provider, record.provider_message_id
    if not (provider and pmid):
        return record
    if not await ctx.receipts.needs_matching(record.id, provider, pmid, record.state):
        return record
    try:
        async with ctx.receipts.matching(record.id, provider, pmid) as events:
            for event in events:
                await ctx.publisher.publish_event(event)
    except BrokerUnavailable as exc:
        # Committed with its events in the outbox: the outbox drain publishes them.
        log.warning("receipt_match_deferred", id=record.id, error=str(exc))
        return record
    return await ctx.store.get(record.id) or record
