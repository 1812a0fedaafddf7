"""``POST /v1/receipts/{provider}`` (or GET): delivery receipts, trusted only once verified.

The order is fixed: find the configured provider (404), build the ``Webhook`` exactly
as the provider sent it, let the provider verify it, and only then parse it. A
refused webhook is answered 401 when its signature is missing or wrong
(``BadSignature``: the caller could not prove who it is) and 403 when it is authentic
but stale or replayed (``StaleReceipt``: proving it again would not help); the refusal
is recorded and counted, and nothing else in the store changes.

Replays: every accepted webhook leaves a digest (the provider's ``signature_headers``
and the body, or the query of a GET); the same digest again within the retention
period is refused as replayed. The receipts, the digest and the message states commit
together, after the status events went out, so a failed publish (503) leaves the
provider's retry welcome.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit

from fastapi import APIRouter, Depends, Request, Response
from fastapi.responses import JSONResponse

from smsrelay.api.body import read_body
from smsrelay.api.broker import BrokerUnavailable
from smsrelay.api.context import ApiContext, get_context
from smsrelay.api.errors import documented, error_response
from smsrelay.errors import ReceiptError, StaleReceipt
from smsrelay.logging import get_logger
from smsrelay.models import Receipt
from smsrelay.providers import Provider, Webhook

log = get_logger(__name__)

router = APIRouter(tags=["receipts"])

MAX_WEBHOOK_BYTES = 1024 * 1024


RECEIPT_ROUTE: dict[str, Any] = {
    "status_code": 204,
    "response_class": Response,
    "responses": documented(400, 401, 403, 404, 413, 503),
}


@router.post(
    "/v1/receipts/{provider}",
    operation_id="receiveReceipts",
    summary="Receive a provider's delivery receipts",
    **RECEIPT_ROUTE,
)
async def receive_receipts(
    provider: str, request: Request, ctx: ApiContext = Depends(get_context)
) -> Response:
    """Verify, record and apply a delivery report; `{provider}` is the configured name."""
    return await _webhook(provider, request, ctx)


@router.get(
    "/v1/receipts/{provider}",
    operation_id="receiveReceiptsAsQuery",
    summary="Receive delivery receipts sent as a GET query",
    **RECEIPT_ROUTE,
)
async def receive_receipts_as_query(
    provider: str, request: Request, ctx: ApiContext = Depends(get_context)
) -> Response:
    """The same for providers that report with GET (Vonage, MessageBird): the query says it."""
    return await _webhook(provider, request, ctx)


async def _webhook(provider: str, request: Request, ctx: ApiContext) -> Response:
    adapter = ctx.providers.get(provider)
    if adapter is None:
        return error_response(404, f"no provider is configured as {provider!r}")
    body = await read_body(request, MAX_WEBHOOK_BYTES)
    if body is None:
        return error_response(413, f"the webhook is over {MAX_WEBHOOK_BYTES} bytes")
    webhook = Webhook(
        method=request.method,
        url=public_url(request, ctx.settings.public_url),
        headers={name.lower(): value for name, value in request.headers.items()},
        body=body,
        query=dict(request.query_params),
    )
    return await _receive(ctx, adapter, webhook, datetime.now(UTC))


async def _receive(ctx: ApiContext, adapter: Provider, webhook: Webhook, now: datetime) -> Response:
    try:
        adapter.verify_receipt(webhook, now)
    except ReceiptError as exc:
        return await _refuse(ctx, adapter.name, exc, now)
    try:
        batch = adapter.parse_receipts(webhook)
    except (ValueError, KeyError, TypeError) as exc:
        await _record_refusal(ctx, adapter.name, f"unreadable: {type(exc).__name__}", now)
        return error_response(400, "the receipt could not be read")
    digest = webhook_digest(webhook, getattr(adapter, "signature_headers", ()))
    try:
        await _accept(ctx, adapter.name, digest, batch, now)
    except StaleReceipt as exc:
        return await _refuse(ctx, adapter.name, exc, now)
    except BrokerUnavailable as exc:
        log.warning("receipt_deferred", provider=adapter.name, error=str(exc))
        return error_response(503, "events cannot be published now; retry later")
    for receipt in batch:
        ctx.metrics.receipts.labels(adapter.name, receipt.status.value).inc()
    return Response(status_code=204)


async def _accept(
    ctx: ApiContext, provider: str, digest: str, batch: Sequence[Receipt], now: datetime
) -> None:
    async with ctx.receipts.accepting(provider, digest, batch, now) as events:
        for event in events:
            await ctx.publisher.publish_event(event)


async def _refuse(ctx: ApiContext, provider: str, exc: ReceiptError, now: datetime) -> JSONResponse:
    await _record_refusal(ctx, provider, str(exc) or type(exc).__name__, now)
    if isinstance(exc, StaleReceipt):
        return error_response(403, str(exc))
    return error_response(401, str(exc), headers={"WWW-Authenticate": "Signature"})


async def _record_refusal(ctx: ApiContext, provider: str, reason: str, now: datetime) -> None:
    log.warning("receipt_refused", provider=provider, reason=reason)
    ctx.metrics.receipts.labels(provider, "refused").inc()
    await ctx.receipts.refuse(provider, reason, now)


def public_url(request: Request, base: str | None) -> str:
    """The URL the provider called: ``public_url`` + path, else the forwarded or own URL.

    Signature schemes sign this URL, so behind a proxy it must be the outside one.
    """
    if base:
        origin = base.rstrip("/")
    else:
        proto = _first(request.headers.get("x-forwarded-proto")) or request.url.scheme
        host = _first(request.headers.get("x-forwarded-host")) or request.url.netloc
        origin = f"{proto}://{host}"
    query = request.url.query
    return origin + request.url.path + (f"?{query}" if query else "")


def _first(value: str | None) -> str | None:
    # Each proxy on the way appends its own value; the first is the client's view.
    if not value:
        return None
    return value.split(",")[0].strip() or None


def webhook_digest(webhook: Webhook, signature_headers: Iterable[str]) -> str:
    """sha256 over the provider's signature headers and the report: a replay's fingerprint.

    The report is the body, or for a GET the query string. Only what the provider
    verifies counts: an unsigned header (or an unsigned query on a POST) could be
    changed by a replayer to dodge the digest. A provider without declared headers is
    keyed on the report alone (an identical report says nothing new).
    """
    digest = hashlib.sha256()
    for name in sorted({n.lower() for n in signature_headers}):
        value = webhook.header(name) or ""
        digest.update(f"{name}:{len(value)}:{value}\n".encode())
    if webhook.method.upper() == "GET":
        query = urlsplit(webhook.url).query
        digest.update(f"?{len(query)}:{query}\n".encode())
    digest.update(webhook.body)
    return digest.hexdigest()
