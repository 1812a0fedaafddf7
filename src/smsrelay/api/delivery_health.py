"""``GET /v1/health/delivery``: the report of ``smsrelay health``, as JSON, from the store."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query
from pydantic import BaseModel

from smsrelay.api.auth import require_api_key
from smsrelay.api.context import ApiContext, get_context
from smsrelay.api.errors import documented, error_response
from smsrelay.health.report import build_report, to_document, windows_since
from smsrelay.logging import get_logger
from smsrelay.store.health import HealthReads

log = get_logger(__name__)

router = APIRouter(tags=["health"], dependencies=[Depends(require_api_key)])


class FailureCode(BaseModel):
    """A failure code and how many messages or attempts carried it."""

    code: str
    count: int


class WindowHealth(BaseModel):
    """One provider x country over one window (messages sent in it)."""

    sent: int
    delivered: int
    undelivered: int
    failed: int
    pending: int
    send_failures: int
    delivery_rate: float | None
    top_failure_codes: list[FailureCode]
    latency_p50: float | None
    latency_p95: float | None


class KeyHealthOut(BaseModel):
    """One provider x destination country; ``breaker`` is null where this process has none."""

    provider: str
    country: str
    breaker: str | None
    breaker_reason: str | None
    windows: dict[str, WindowHealth]


class DeliveryHealth(BaseModel):
    """Delivery health per provider x country over each window (name → start)."""

    generated_at: str
    windows: dict[str, str]
    rows: list[KeyHealthOut]


@router.get(
    "/v1/health/delivery",
    operation_id="deliveryHealth",
    response_model=DeliveryHealth,
    responses=documented(401, 422, 503),
    summary="Delivery rate, failure codes and receipt latency per provider and country",
)
async def delivery_health(
    since: Annotated[
        str | None, Query(max_length=16, description="One window (5m, 1h, 7d); default 5m, 1h, 24h")
    ] = None,
    provider: Annotated[str | None, Query(max_length=64)] = None,
    country: Annotated[str | None, Query(pattern="^[A-Za-z]{2}$")] = None,
    ctx: ApiContext = Depends(get_context),
) -> Any:
    """Messages sent in each window: delivered, undelivered, failed, rate, codes, latency."""
    now = datetime.now(UTC)
    try:
        windows = windows_since(since, now)
    except ValueError as exc:
        return error_response(422, str(exc), field="since")
    reads = HealthReads(ctx.store)
    try:
        rows = await build_report(
            reads, windows, provider=provider, country=country.upper() if country else None
        )
    except Exception as exc:  # the store cannot answer: 503, never a 500
        log.warning("delivery_health_unavailable", error=type(exc).__name__)
        return error_response(503, "the store did not answer; retry later")
    return to_document(rows, windows, now)
