"""``POST /v1/receipts/{provider}`` (or GET): delivery receipts, trusted only once verified.

The order is fixed: find the configured provider (404); read at most the provider's
``max_receipt_bytes`` (413 beyond: no provider sends more) and build the ``Webhook``
exactly as the provider sent it; refuse more fields than the provider sends (400)
before any signature is computed; let the provider verify it; only then parse it.
Every step is linear in the webhook's size. A refused webhook is answered 401 when
its signature is missing or wrong (``BadSignature``: the caller could not prove who
it is), 403 when it is authentic but stale or replayed (``StaleReceipt``: proving it
again would not help), 400 when it is unreadable; the refusal is counted and, sampled,
logged and recorded (``smsrelay.api.refusals``), and nothing else in the store changes.

Replays: every accepted webhook leaves a digest of its ``replay_key``, the canonical
content its signature covers; the same digest again within the retention period is
refused as replayed, however the bytes were re-encoded. The receipts, the digest, the
message states and their status events (in the outbox) commit together; the events
are published after the commit. When the broker is down the receipt is still taken
(204): its events wait in the outbox, which ``drain_outbox_forever`` empties from
start-up on (so a crash between commit and publish loses nothing either).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from fastapi import APIRouter, Depends, Request, Response
from fastapi.responses import JSONResponse
from opentelemetry import trace
from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Receive, Scope, Send

from smsrelay import telemetry
from smsrelay.api.body import read_body
from smsrelay.api.context import ApiContext, get_context
from smsrelay.api.errors import documented, error_response
from smsrelay.api.refusals import kind_of
from smsrelay.errors import MalformedReceipt, OversizedReceipt, ReceiptError
from smsrelay.logging import get_logger
from smsrelay.models import Receipt
from smsrelay.providers import Provider, Webhook

log = get_logger(__name__)

router = APIRouter(tags=["receipts"])

RECEIPT_ROUTE: dict[str, Any] = {
    "status_code": 204,
    "response_class": Response,
    "responses": documented(400, 401, 403, 404, 413),
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


class ReceiptsFastPath:
    """ASGI: ``/v1/receipts/{provider}`` straight to its handler, past FastAPI's routing.

    Receipts come as fast as sends; FastAPI's routing and dependency solving cost more
    per receipt than the receipt itself (bench/README.md, "Receipts"). The routes above
    stay registered for the OpenAPI document and answer the same; this answers first.
    Body limits (``BodyLimits``, outside it) still apply; their refusals raise
    ``HTTPException``, answered here as the app's handler would.
    """

    def __init__(self, app: ASGIApp, context: ApiContext) -> None:
        self.app = app
        self.context = context

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        provider = _receipt_provider(scope)
        if provider is None:
            await self.app(scope, receive, send)
            return
        try:
            answer = await _webhook(provider, Request(scope, receive), self.context)
        except HTTPException as exc:
            answer = error_response(exc.status_code, str(exc.detail), headers=exc.headers)
        await answer(scope, receive, send)


_PREFIX = "/v1/receipts/"


def _receipt_provider(scope: Scope) -> str | None:
    """The ``{provider}`` of a receipts request, or None for any other request."""
    if scope["type"] != "http" or scope["method"] not in ("POST", "GET"):
        return None
    path: str = scope["path"]
    if not path.startswith(_PREFIX):
        return None
    provider = path[len(_PREFIX) :]
    return provider if provider and "/" not in provider else None


async def _webhook(provider: str, request: Request, ctx: ApiContext) -> Response:
    with telemetry.serving(request.method, "/v1/receipts/{provider}", request.headers):
        telemetry.note({"smsrelay.provider": provider})
        answer = await _take(provider, request, ctx)
        telemetry.answered(answer.status_code)
        return answer


async def _take(provider: str, request: Request, ctx: ApiContext) -> Response:
    adapter = ctx.providers.get(provider)
    if adapter is None:
        return error_response(404, f"no provider is configured as {provider!r}")
    now = datetime.now(UTC)
    limit = adapter.max_receipt_bytes
    body = await read_body(request, limit)
    if body is None:
        too_large = OversizedReceipt(f"{adapter.type_name} receipts are at most {limit} bytes")
        return await _refuse(ctx, adapter.name, too_large, now)
    webhook = Webhook(
        method=request.method,
        url=public_url(request, ctx.settings.public_url),
        headers={name.lower(): value for name, value in request.headers.items()},
        body=body,
        query=dict(request.query_params),
    )
    return await _receive(ctx, adapter, webhook, now)


async def _receive(ctx: ApiContext, adapter: Provider, webhook: Webhook, now: datetime) -> Response:
    try:
        batch, digest = verified(adapter, webhook, now)
        # Committed; its events are published by the batcher (see store/receipt_batch.py).
        accepted = await ctx.batcher.accept(adapter.name, digest, batch, now)
    except ReceiptError as exc:
        return await _refuse(ctx, adapter.name, exc, now)
    await _link_sends(ctx, adapter.name, accepted.kept)
    for receipt in accepted.kept:
        ctx.metrics.receipts.labels(adapter.name, receipt.status.value).inc()
    return Response(status_code=204)


async def _link_sends(ctx: ApiContext, provider: str, kept: Sequence[Receipt]) -> None:
    """Link the receipt's span to the spans of the sends it reports (by provider message id).

    Only while tracing: it costs a query. A failure costs the links, never the receipt.
    """
    current = trace.get_current_span()
    if not current.is_recording():
        return
    pmids = sorted({r.provider_message_id for r in kept if r.provider_message_id})
    try:
        stored = await ctx.receipts.trace_contexts(provider, pmids[:MAX_LINKS])
    except Exception as exc:  # the receipt is kept; only its links are lost
        log.warning("trace_links_failed", error=type(exc).__name__)
        return
    for message_id, value in stored:
        link = telemetry.link_to(value, **{"smsrelay.message.id": message_id})
        if link is not None:
            current.add_link(link.context, link.attributes)


# The SDK keeps 128 links per span by default; a webhook reports far fewer sends.
MAX_LINKS = 100


def verified(adapter: Provider, webhook: Webhook, now: datetime) -> tuple[list[Receipt], str]:
    """The receipts of an authentic webhook and its replay digest; ``ReceiptError`` else.

    Limits first (linear, reads nothing), then the signature, then the reading: no
    unsigned input reaches a parser beyond what the scheme itself must read.
    """
    adapter.check_receipt_limits(webhook)
    try:
        adapter.verify_receipt(webhook, now)
        batch = adapter.parse_receipts(webhook)
        key = adapter.replay_key(webhook)
    except _UNREADABLE as exc:  # a header that is not text, a body that is not JSON…
        raise MalformedReceipt(f"unreadable: {type(exc).__name__}") from None
    return batch, webhook_digest(adapter.type_name, key)


# What reading a hostile webhook may raise (ValueError covers UnicodeError, JSON errors).
_UNREADABLE = (ValueError, KeyError, TypeError, RecursionError)


async def drain_outbox(ctx: ApiContext, older_than: datetime | None = None) -> int:
    """Publish events left in the outbox (by a crash or a broker outage); how many went out."""
    total = 0
    while batch := await ctx.receipts.outbox(older_than, limit=OUTBOX_BATCH):
        for item in batch:
            await ctx.publisher.publish_event(item.event)
            await ctx.receipts.published([item.key])
            total += 1
    return total


async def drain_outbox_forever(ctx: ApiContext, stop: asyncio.Event) -> None:
    """From start-up on, every ``OUTBOX_EVERY`` s: publish events older than that.

    Younger events are most likely being published by the request that wrote them;
    an older one was left behind. A few may go out twice (an event is at least once).
    """
    while not stop.is_set():
        if ctx.publisher.ready:
            cutoff = datetime.now(UTC) - timedelta(seconds=OUTBOX_EVERY)
            try:
                drained = await drain_outbox(ctx, cutoff)
            except Exception as exc:  # broker or store down: next round
                log.warning("outbox_drain_failed", error=type(exc).__name__)
            else:
                if drained:
                    log.info("outbox_drained", published=drained)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), timeout=OUTBOX_EVERY)


OUTBOX_EVERY = 10.0
OUTBOX_BATCH = 100


async def _refuse(ctx: ApiContext, provider: str, exc: ReceiptError, now: datetime) -> JSONResponse:
    # Bounded: a reason may quote what the caller sent.
    reason = (str(exc) or type(exc).__name__)[:200]
    kind = kind_of(exc)
    ctx.metrics.receipts.labels(provider, "refused").inc()
    ctx.metrics.receipt_refusals.labels(provider, kind).inc()
    skipped = ctx.refusals.admit(provider, kind)
    if skipped is not None:
        log.warning("receipt_refused", provider=provider, reason=reason, skipped=skipped)
        note = f" (and {skipped} more since the last one recorded)" if skipped else ""
        await ctx.receipts.refuse(provider, reason + note, now)
    return error_response(_ANSWERS[kind], reason, headers=_CHALLENGE.get(kind))


# The HTTP status of each kind of refusal: 401 asks for proof, the others would not help.
_ANSWERS: dict[str, int] = {
    "bad_signature": 401,
    "replayed": 403,
    "stale": 403,
    "oversized": 413,
    "malformed": 400,
}
_CHALLENGE: dict[str, dict[str, str]] = {"bad_signature": {"WWW-Authenticate": "Signature"}}


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


def webhook_digest(provider_type: str, replay_key: bytes) -> str:
    """sha256 of the provider's canonical signed content: a replay's fingerprint.

    ``replay_key`` is what the signature covers, in a form that a replayer cannot vary
    without breaking the signature (see ``Provider.replay_key``).
    """
    return hashlib.sha256(provider_type.encode() + b"\0" + replay_key).hexdigest()
