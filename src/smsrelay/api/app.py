"""The FastAPI app: ``create_app`` wires the routes to the store, broker and providers.

The app owns none of what it is given except the publisher's connection, which it
opens at start-up (without waiting for the broker) and closes at shutdown. It also
purges old receipts, refusals and replay digests once a day, and publishes status events
left in the outbox (``receipts.drain_outbox_forever``).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable, Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

from fastapi import FastAPI

from smsrelay.api import (
    delivery_health,
    errors,
    explain,
    guard,
    health,
    messages,
    receipts,
    reports,
    verifications,
)
from smsrelay.api.broker import Publisher
from smsrelay.api.context import ApiContext, context_of
from smsrelay.api.limits import BodyBudget, BodyLimits
from smsrelay.api.schemas import send_request_schema
from smsrelay.guard import Guard
from smsrelay.logging import get_logger
from smsrelay.metrics import Metrics
from smsrelay.models import MAX_REQUEST_BYTES
from smsrelay.providers import Provider
from smsrelay.settings import Settings
from smsrelay.store import SqlStore
from smsrelay.store.receipt_batch import ReceiptBatcher
from smsrelay.store.receipts import ReceiptStore

log = get_logger(__name__)

TITLE = "smsrelay"
API_VERSION = "1.0.0"
DESCRIPTION = (
    "Send SMS through smsrelay over HTTP, follow a message's state, and receive the "
    "providers' delivery receipts. `/v1/messages` needs an API key; receipts are "
    "authenticated by each provider's own signature."
)


def create_app(
    settings: Settings,
    store: SqlStore,
    publisher: Publisher,
    providers: Mapping[str, Provider],
    metrics: Metrics,
    send_consumers: Callable[[], int | None] | None = None,
    pumping_guard: Guard | None = None,
) -> FastAPI:
    """The HTTP API over running pieces (see ``smsrelay.api.server`` for the process)."""
    app = bare_app()
    window = timedelta(days=settings.retention_days)
    receipt_store = ReceiptStore(store, replay_window=window, metrics=metrics)
    ctx = ApiContext(
        settings=settings,
        store=store,
        receipts=receipt_store,
        publisher=publisher,
        providers=providers,
        metrics=metrics,
        batcher=ReceiptBatcher(receipt_store, publisher.publish_event),
        send_consumers=send_consumers,
        guard=pumping_guard,
    )
    app.state.smsrelay = ctx
    app.add_middleware(receipts.ReceiptsFastPath, context=ctx)
    limits = settings.api_limits
    app.add_middleware(
        BodyLimits,
        budget=BodyBudget(limits.body_budget_bytes),
        max_body=limits.max_body_bytes,
        route_limits={"/v1/messages": MAX_REQUEST_BYTES},
    )
    return app


def bare_app() -> FastAPI:
    """The routes and their document, with nothing attached (enough for the OpenAPI file)."""
    app = FastAPI(title=TITLE, version=API_VERSION, description=DESCRIPTION, lifespan=_lifespan)
    for module in (
        messages,
        verifications,
        receipts,
        health,
        delivery_health,
        explain,
        reports,
        guard,
    ):
        app.include_router(module.router)
    errors.install(app)
    app.openapi = lambda: _openapi(app)  # type: ignore[method-assign]
    return app


def _openapi(app: FastAPI) -> dict[str, Any]:
    if app.openapi_schema is None:
        document = FastAPI.openapi(app)
        schema, defs = send_request_schema()
        components = document.setdefault("components", {}).setdefault("schemas", {})
        components.update({"SendRequest": schema, **defs})
        _own_validation_errors(document)
        app.openapi_schema = dict(document)
    return app.openapi_schema


def _own_validation_errors(document: dict[str, Any]) -> None:
    """FastAPI documents its 422 body; errors.install answers with ErrorBody instead."""
    schemas = document["components"]["schemas"]
    schemas.pop("HTTPValidationError", None)
    schemas.pop("ValidationError", None)
    error_body = {"$ref": "#/components/schemas/ErrorBody"}
    for operations in document["paths"].values():
        for operation in operations.values():
            answer = operation.get("responses", {}).get("422")
            if answer is not None:
                answer["content"] = {"application/json": {"schema": error_body}}


@contextlib.asynccontextmanager
async def _lifespan(app: FastAPI) -> AsyncIterator[None]:
    ctx = context_of(app)
    await ctx.publisher.start()
    stop = asyncio.Event()
    tasks = [
        asyncio.create_task(_purge_daily(ctx, stop)),
        asyncio.create_task(receipts.drain_outbox_forever(ctx, stop)),
    ]
    try:
        yield
    finally:
        stop.set()
        # A purge or drain under way finishes first: cancelled mid-call, the database
        # driver's thread would answer a loop that is gone.
        for task in tasks:
            with contextlib.suppress(TimeoutError, asyncio.CancelledError):
                await asyncio.wait_for(task, timeout=10)
        with contextlib.suppress(Exception):  # the store may be down: the drain resends
            await ctx.batcher.close()
        await ctx.publisher.close()


async def _purge_daily(ctx: ApiContext, stop: asyncio.Event) -> None:
    while not stop.is_set():
        cutoff = datetime.now(UTC) - timedelta(days=ctx.settings.retention_days)
        try:
            purged = await ctx.receipts.purge(cutoff)
            log.info("receipts_purged", purged=purged, days=ctx.settings.retention_days)
        except Exception as exc:  # the store may be down now; tomorrow is another try
            log.warning("receipts_purge_failed", error=type(exc).__name__)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), timeout=86400)
