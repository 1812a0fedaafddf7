"""The routing table: longest prefix, then country, then the ``*`` default."""

from __future__ import annotations

from smsrelay.models import SendRequest, validate_request
from smsrelay.routing import Router

ROUTES = {
    "+4420": ["london"],
    "+44": ["uk"],
    "GB": ["gb"],
    "FR": ["fr", "fallback"],
    "*": ["default", "fallback"],
}

LONDON = "+442079460018"
MANCHESTER = "+441612345678"
PARIS = "+33612345678"
SAN_FRANCISCO = "+14155550123"


def request(to: str) -> SendRequest:
    """A valid request to ``to``."""
    return validate_request({"id": "r-1", "to": to, "body": "hi"})


def test_longest_matching_prefix_wins() -> None:
    """``+4420`` beats ``+44`` for a London number."""
    assert Router(ROUTES).route(request(LONDON)) == ["london"]


def test_shorter_prefix_applies_when_the_longer_does_not_match() -> None:
    """A UK number outside ``+4420`` takes the ``+44`` rule."""
    assert Router(ROUTES).route(request(MANCHESTER)) == ["uk"]


def test_prefix_beats_country() -> None:
    """A matching prefix wins over the number's country rule."""
    routes = {"GB": ["gb"], "+44": ["uk"], "*": ["default"]}
    assert Router(routes).route(request(MANCHESTER)) == ["uk"]


def test_country_beats_default() -> None:
    """Without a matching prefix, the country rule applies, in its order."""
    assert Router(ROUTES).route(request(PARIS)) == ["fr", "fallback"]


def test_country_rule_applies_when_no_prefix_is_configured() -> None:
    """A GB number goes to the GB rule when no prefix matches it."""
    routes = {"+4420": ["london"], "GB": ["gb"], "*": ["default"]}
    assert Router(routes).route(request(MANCHESTER)) == ["gb"]


def test_default_route_catches_everything_else() -> None:
    """A number matching no prefix and no country goes to ``*``."""
    assert Router(ROUTES).route(request(SAN_FRANCISCO)) == ["default", "fallback"]


def test_returned_route_is_a_copy() -> None:
    """Changing the returned list does not change the routing table."""
    router = Router(ROUTES)
    router.route(request(SAN_FRANCISCO)).append("intruder")
    assert router.route(request(SAN_FRANCISCO)) == ["default", "fallback"]
