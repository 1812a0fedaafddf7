"""The routing table: longest prefix, then country, then the ``*`` default."""

from __future__ import annotations

import pytest

from smsrelay import settings
from smsrelay.errors import ConfigError
from smsrelay.models import SendRequest, validate_request
from smsrelay.routing import Router, check_route_key, route_coverage_warnings

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


GUERNSEY_MOBILE = "+447911123456"


def test_a_shared_calling_code_is_covered_by_its_prefix_not_its_main_country() -> None:
    """+447911123456 is Guernsey for phonenumbers: a GB route misses it, a +44 route does not."""
    assert request(GUERNSEY_MOBILE).country == "GG"
    assert Router({"GB": ["gb"], "*": ["default"]}).route(request(GUERNSEY_MOBILE)) == ["default"]
    assert Router({"+44": ["uk"], "*": ["default"]}).route(request(GUERNSEY_MOBILE)) == ["uk"]


@pytest.mark.parametrize("key", ["*", "GB", "GG", "US", "+1", "+44", "+4420", "+123456789012345"])
def test_route_keys_that_can_match_are_accepted(key: str) -> None:
    """``*``, a region phonenumbers knows and ``+`` with 1-15 digits are route keys."""
    check_route_key(key)


@pytest.mark.parametrize(
    ("key", "hint"),
    [
        ("UK", '"GB"'),
        ("gb", "'GB'"),
        ("ZZ", "ISO 3166"),
        ("Europe", "ISO 3166"),
        ("44", "ISO 3166"),
        ("+", "1 to 15 digits"),
        ("+044", "1 to 15 digits"),
        ("+44 20", "1 to 15 digits"),
        ("+1234567890123456", "1 to 15 digits"),
    ],
)
def test_route_key_that_never_matches_is_refused_naming_it(key: str, hint: str) -> None:
    """A key that no number can match raises ConfigError at ``routes.<key>`` with a hint."""
    with pytest.raises(ConfigError) as caught:
        check_route_key(key)
    assert caught.value.key == f"routes.{key}"
    assert hint in caught.value.problem


def test_settings_refuse_a_uk_route() -> None:
    """Loading settings with a ``UK`` route stops start-up at ``routes.UK``."""
    with pytest.raises(ConfigError) as caught:
        settings.load(routes={"UK": ["simulator"], "*": ["simulator"]})
    assert caught.value.key == "routes.UK"


def test_country_route_leaving_out_its_calling_code_territories_is_warned() -> None:
    """A GB route warns that GG, IM and JE share +44 and go to ``*``; +44 is suggested."""
    (warning,) = route_coverage_warnings({"GB": ["gb"], "*": ["default"]})
    assert "route GB leaves out GG, IM, JE" in warning and "'+44'" in warning


def test_us_route_names_every_other_plus_one_territory() -> None:
    """A US route lists the 24 other regions of +1 (CA, PR…) in its one warning line."""
    (warning,) = route_coverage_warnings({"US": ["us"], "*": ["default"]})
    assert "CA" in warning and "PR" in warning and "+1" in warning
    assert "\n" not in warning


@pytest.mark.parametrize(
    "routes",
    [
        {"+44": ["uk"], "*": ["default"]},
        {"GB": ["gb"], "GG": ["gb"], "IM": ["gb"], "JE": ["x"], "*": ["default"]},
        {"GB": ["default"], "*": ["default"]},
        {"FR": ["fr"], "GG": ["gg"], "*": ["default"]},
        {"*": ["default"]},
    ],
)
def test_routes_covering_their_calling_codes_give_no_warning(
    routes: dict[str, list[str]],
) -> None:
    """A prefix route, routes for every territory, the same providers as ``*``, an unshared code or a minor territory: no warning."""
    assert route_coverage_warnings(routes) == []


def test_country_route_shadowed_by_its_calling_code_prefix_is_warned() -> None:
    """GB beside +44 is never used (the prefix wins): the warning says so."""
    (warning,) = route_coverage_warnings({"GB": ["gb"], "+44": ["uk"], "*": ["default"]})
    assert warning == "route GB is never used: +44 matches every +44 number"
