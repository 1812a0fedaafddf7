"""``/healthz`` (the process answers), ``/readyz`` (broker and store work), ``/metrics``."""

from __future__ import annotations

import asyncio
from typing import Any, Literal

from fastapi import APIRouter, Depends, Response
from fastapi.responses import JSONResponse
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from smsrelay.api.context import ApiContext, get_context
from smsrelay.api.schemas import Health, Readiness
from smsrelay.logging import get_logger

log = get_logger(__name__)

router = APIRouter(tags=["operations"])

STORE_TIMEOUT = 2.0


@router.get("/healthz", operation_id="healthz", response_model=Health, summary="The process is up")
async def healthz() -> Health:
    """Always 200 while the process serves requests."""
    return Health()


@router.get(
    "/readyz",
    operation_id="readyz",
    response_model=Readiness,
    responses={503: {"model": Readiness, "description": "broker or store unavailable"}},
    summary="Broker and store are reachable",
)
async def readyz(ctx: ApiContext = Depends(get_context)) -> Any:
    """200 when the broker is connected, the store answers and sms.send has a consumer."""
    checks: dict[str, Literal["ok", "failed"]] = {
        "broker": "ok" if ctx.publisher.ready else "failed",
        "store": "ok" if await _store_ok(ctx) else "failed",
    }
    if ctx.send_consumers is not None:
        # Accepting requests nobody will consume would hide an outage from the producer.
        checks["consumers"] = "ok" if (ctx.send_consumers() or 0) > 0 else "failed"
    ready = all(v == "ok" for v in checks.values())
    body = Readiness(status="ready" if ready else "unready", checks=checks)
    return JSONResponse(body.model_dump(), status_code=200 if ready else 503)


async def _store_ok(ctx: ApiContext) -> bool:
    try:
        async with asyncio.timeout(STORE_TIMEOUT):
            await ctx.store.ping()
    except Exception as exc:  # any driver error means "not ready"; the log says which
        log.warning("store_unready", error=type(exc).__name__)
        return False
    return True


@router.get(
    "/metrics",
    operation_id="metrics",
    response_class=Response,
    responses={200: {"content": {"text/plain": {"schema": {"type": "string"}}}}},
    summary="Prometheus metrics",
)
async def metrics(ctx: ApiContext = Depends(get_context)) -> Response:
    """Sends, failures and latency by provider; receipts by provider and status."""
    return Response(generate_latest(ctx.metrics.registry), media_type=CONTENT_TYPE_LATEST)
