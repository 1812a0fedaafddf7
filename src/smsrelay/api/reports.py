"""``GET /v1/reports/costs``: the costs report of ``smsrelay report costs``, as JSON."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query
from pydantic import BaseModel

from smsrelay.api.auth import require_api_key
from smsrelay.api.context import ApiContext, get_context
from smsrelay.api.errors import documented, error_response
from smsrelay.economics.report import ReportError, parse_by, parse_since
from smsrelay.store.costs import CostStore

router = APIRouter(tags=["reports"], dependencies=[Depends(require_api_key)])


class CostLine(BaseModel):
    """One group: sent messages, parts, delivered, costs (in ``currency``)."""

    provider: str | None
    country: str | None
    currency: str | None
    messages: int
    parts: int
    delivered: int
    estimated_cost: float | None
    actual_cost: float | None
    cost_per_delivered: float | None
    actual_per_delivered: float | None


@router.get(
    "/v1/reports/costs",
    operation_id="costsReport",
    response_model=list[CostLine],
    responses=documented(401, 422, 503),
    summary="Cost of sent messages per provider and country",
)
async def costs_report(
    since: Annotated[str, Query(max_length=32, description="7d, 12h, 30m or a date")] = "7d",
    by: Annotated[str, Query(max_length=32, description="provider,country")] = "provider,country",
    ctx: ApiContext = Depends(get_context),
) -> Any:
    """Messages sent since ``since``, grouped ``by``: parts, delivered, costs."""
    try:
        start, groups = parse_since(since), parse_by(by)
    except ReportError as exc:
        return error_response(422, str(exc))
    try:
        rows = await CostStore(ctx.store.engine).report(start, groups)
    except Exception:  # the store cannot answer: 503, never a 500
        return error_response(503, "the store did not answer; retry later")
    return [row.as_dict() for row in rows]
