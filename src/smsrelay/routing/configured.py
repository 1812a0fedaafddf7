"""The router a configuration describes, and ``explain``: the plan for a number and text.

The worker (``runtime.py``), ``smsrelay route explain`` and ``GET /v1/routes/explain`` all
build their router here and plan with ``Router.plan``: what is explained is what is done.
"""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncEngine

from smsrelay.economics.prices import PriceTable
from smsrelay.models import SendRequest, validate_request
from smsrelay.routing.plan import Plan, Router
from smsrelay.routing.views import HealthView, LimitsView
from smsrelay.settings import Settings
from smsrelay.store.prices import PriceStore

# Without a text, explain a one-part GSM-7 message.
DEFAULT_BODY = "x"
EXPLAIN_ID = "explain"


def configured_router(
    settings: Settings,
    prices: PriceTable | None = None,
    health: HealthView | None = None,
    limits: LimitsView | None = None,
) -> Router:
    """The planner over ``settings``' routes, each provider's encoding setting and ``prices``."""
    encodings = {name: p.encoding for name, p in settings.provider_settings().items()}
    return Router(settings.routes, prices=prices, encodings=encodings, health=health, limits=limits)


async def stored_prices(engine: AsyncEngine, settings: Settings) -> PriceTable:
    """The prices in effect now: the database's tables and the config's (as a worker loads)."""
    return PriceTable([*await PriceStore(engine).history(), *settings.prices.table()])


def explain_request(
    to: str, body: str | None = None, kind: str | None = None, message_id: str | None = None
) -> SendRequest:
    """The request to plan for ``route explain``; ``InvalidRequest`` as for a real one."""
    data: dict[str, object] = {
        "id": message_id or EXPLAIN_ID,
        "to": to,
        "body": body or DEFAULT_BODY,
    }
    if kind:
        data["kind"] = kind
    return validate_request(data)


def explain(router: Router, request: SendRequest) -> Plan:
    """The plan the worker would follow for ``request`` now (the very same ``Router.plan``)."""
    return router.plan(request)
