"""``GET /v1/routes/explain``: the plan for a number and text, as ``smsrelay route explain``."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query
from pydantic import BaseModel

from smsrelay.api.auth import require_api_key
from smsrelay.api.context import ApiContext, get_context
from smsrelay.api.errors import documented, error_response, field_of
from smsrelay.errors import InvalidRequest
from smsrelay.routing.configured import configured_router, explain, explain_request, stored_prices

router = APIRouter(tags=["routing"], dependencies=[Depends(require_api_key)])


class PlanRoute(BaseModel):
    """The route that matched and its strategy."""

    key: str
    kind: str
    why: str
    strategy: str


class PlanCandidate(BaseModel):
    """One provider considered, with what decided its place (``place`` null: not tried)."""

    provider: str
    place: int | None
    reason: str
    excluded: bool
    price: str | None
    price_destination: str | None
    currency: str | None
    parts: int
    encoding: str
    original_encoding: str
    original_parts: int
    estimated_cost: str | None
    delivery_rate: float | None
    samples: int
    breaker: str
    rate_limited: bool
    cap_reached: bool
    limits: str


class RoutePlan(BaseModel):
    """The destination as parsed, the route, the order and every candidate."""

    to: str
    country: str
    country_reason: str
    route: PlanRoute
    order: list[str]
    candidates: list[PlanCandidate]


@router.get(
    "/v1/routes/explain",
    operation_id="explainRoute",
    response_model=RoutePlan,
    responses=documented(401, 422, 503),
    summary="Explain where a message to a number would go, and why",
)
async def explain_route(
    to: Annotated[str, Query(max_length=32, description="Destination, E.164")],
    body: Annotated[str | None, Query(max_length=1600)] = None,
    kind: Annotated[str | None, Query(max_length=32)] = None,
    id: Annotated[str | None, Query(max_length=64, description="Message id")] = None,
    ctx: ApiContext = Depends(get_context),
) -> Any:
    """The plan the worker would follow now: the same planner, prices and encodings."""
    try:
        request = explain_request(to, body, kind, id)
    except InvalidRequest as exc:
        return error_response(422, exc.reason, field=field_of(exc.reason))
    try:
        prices = await stored_prices(ctx.store.engine, ctx.settings)
    except Exception:  # the price tables cannot be read: say so, not 500
        return error_response(503, "the store did not answer; retry later")
    return explain(configured_router(ctx.settings, prices), request).explain()
