"""Routing: the table of rules (``table``), strategies (``strategies``), the plan (``plan``).

``Router(routes, ...).plan(request)`` is the one decision per message: the dispatcher
walks it and ``route explain`` prints it.
"""

from __future__ import annotations

from smsrelay.routing.candidate import Candidate
from smsrelay.routing.plan import Plan, Router, country_reason
from smsrelay.routing.strategies import STRATEGIES, Strategy
from smsrelay.routing.table import (
    DEFAULT_KEY,
    RouteConfig,
    RouteSpec,
    RouteTable,
    check_route_key,
    route_config,
    route_coverage_warnings,
    route_providers,
)
from smsrelay.routing.views import (
    HealthSnapshot,
    HealthView,
    LimitState,
    LimitsView,
    NoHealth,
    NoLimits,
)

__all__ = [
    "DEFAULT_KEY",
    "STRATEGIES",
    "Candidate",
    "HealthSnapshot",
    "HealthView",
    "LimitState",
    "LimitsView",
    "NoHealth",
    "NoLimits",
    "Plan",
    "RouteConfig",
    "RouteSpec",
    "RouteTable",
    "Router",
    "Strategy",
    "check_route_key",
    "country_reason",
    "route_config",
    "route_coverage_warnings",
    "route_providers",
]
