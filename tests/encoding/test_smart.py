"""Smart encoding: look-alikes folded to GSM-7, and nothing else touched."""

from __future__ import annotations

import unicodedata

import pytest
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.provisional import urls

from smsrelay.encoding import Encoding, encode, is_gsm7, outgoing, substitute
from smsrelay.encoding.smart import LOOKALIKES
from smsrelay.errors import InvalidRequest
from smsrelay.models import BodyEncoding, SendRequest, validate_request
from smsrelay.settings import load
from tests.encoding.corpus import GSM_BASIC, GSM_EXTENSION

GSM = GSM_BASIC + GSM_EXTENSION


def test_table_never_maps_gsm7_digits_or_combining_marks() -> None:
    """No GSM-7 character, digit of any script or combining mark is a key of the table."""
    keys = "".join(LOOKALIKES)
    assert [c for c in keys if c in GSM or c.isdigit() or unicodedata.combining(c)] == []


def test_table_only_produces_gsm7() -> None:
    """Every replacement is GSM-7 text."""
    assert all(is_gsm7(value) for value in LOOKALIKES.values())


@pytest.mark.parametrize(
    ("body", "sent"),
    [
        ("Don’t forget", "Don't forget"),
        ("“Hello” — welcome…", '"Hello" - welcome...'),
        ("10\u00a0000 points", "10 000 points"),
        ("zero\u200bwidth", "zerowidth"),
        ("5′ 11″", "5' 11\""),
        ("Ｃｏｄｅ：１２３", "Code:１２３"),
    ],
)
def test_lookalikes_are_replaced(body: str, sent: str) -> None:
    """Curly quotes, dashes, no-break and zero-width spaces, primes and ellipses become GSM-7."""
    assert substitute(body) == sent


def test_gsm7_letters_are_kept() -> None:
    """é, ñ, ü, Ø and the Greek capitals GSM-7 has are never folded."""
    body = "Café Señor Müller Øre ΔΦΓ — ok"
    assert substitute(body) == "Café Señor Müller Øre ΔΦΓ - ok"


def test_link_in_curly_quotes_keeps_its_exact_text() -> None:
    """A URL inside curly quotes is kept as written; the quotes around it are folded."""
    assert substitute("see “https://x.io/a`b” now") == 'see "https://x.io/a`b" now'
    assert substitute("www.x.io/`…") == "www.x.io/`..."


def test_smart_body_goes_gsm7_in_fewer_parts() -> None:
    """A 150-character body with one curly quote goes in 1 GSM-7 part instead of 3 UCS-2 parts."""
    result = encode("a" * 149 + "’", smart=True)
    assert (result.original.encoding, result.original.count) == (Encoding.UCS2, 3)
    assert (result.sent.encoding, result.sent.count, result.changed) == (Encoding.GSM7, 1, True)
    assert result.text == "a" * 149 + "'"


def test_smart_is_not_applied_when_something_stays_ucs2() -> None:
    """With an emoji left the body would stay UCS-2: it is sent exactly as written."""
    result = encode("Don’t 😀", smart=True)
    assert (result.text, result.changed, result.sent.encoding) == ("Don’t 😀", False, Encoding.UCS2)


def test_smart_is_not_applied_when_it_costs_more_parts() -> None:
    """70 ellipses are 1 UCS-2 part but 210 septets (2 parts): the original is sent."""
    result = encode("…" * 70, smart=True)
    assert (result.text, result.changed, result.sent.count) == ("…" * 70, False, 1)


def test_without_smart_the_body_is_untouched() -> None:
    """Smart encoding off: the body is sent as written, original and sent are the same parts."""
    result = encode("Don’t", smart=False)
    assert (result.text, result.changed) == ("Don’t", False)


def test_worst_case_body_is_linear() -> None:
    """A 100 000-character run of scheme-like letters and look-alikes is folded at once."""
    body = ("a" * 1000 + "’") * 100
    assert substitute(body) == ("a" * 1000 + "'") * 100


# No ':' or '.', so no URL can form around the kept character.
prose = st.text(
    alphabet=st.one_of(
        st.sampled_from("".join(LOOKALIKES)),
        st.sampled_from(GSM.replace(":", "").replace(".", "")),
        st.characters(exclude_characters=":."),
    ),
    max_size=80,
)
kept = st.one_of(
    st.sampled_from(GSM),
    st.characters(categories=["Nd"]),
    st.sampled_from("éñüØÅÆßÉÇ"),
)


@given(prose, kept, prose)
def test_digits_and_gsm7_characters_are_never_changed(before: str, char: str, after: str) -> None:
    """A GSM-7 character or a digit of any script comes out as itself, and its neighbours fold as if it were not there."""
    assert substitute(before + char + after) == substitute(before) + char + substitute(after)


@given(st.text(max_size=60), urls(), st.text(max_size=60))
def test_urls_are_never_changed(before: str, url: str, after: str) -> None:
    """A URL between spaces comes out exactly as written, whatever surrounds it."""
    assert f" {url} " in substitute(f"{before} {url} {after}")


@given(st.text(alphabet=st.one_of(st.sampled_from("".join(LOOKALIKES)), st.characters()), max_size=400))
def test_smart_never_costs_more_parts(body: str) -> None:
    """Smart encoding sends GSM-7 in no more parts than the original, or the original itself."""
    result = encode(body, smart=True)
    assert result.sent.count <= result.original.count
    assert result.text == body or result.sent.encoding is Encoding.GSM7


def _request(**fields: object) -> SendRequest:
    return validate_request({"id": "m-1", "to": "+14155550123", "body": "Don’t", **fields})


def test_request_smart_overrides_an_exact_provider() -> None:
    """`encoding: smart` on the request folds the body even where the provider sends as written."""
    request = _request(encoding="smart")
    sent, encoded = outgoing(request, BodyEncoding.EXACT)
    assert (sent.body, request.body, encoded.sent.encoding) == ("Don't", "Don’t", Encoding.GSM7)
    assert sent.id == request.id and sent.to == request.to


def test_request_exact_overrides_a_smart_provider() -> None:
    """`encoding: exact` on the request keeps the body as written on a smart provider."""
    request = _request(encoding="exact")
    sent, encoded = outgoing(request, BodyEncoding.SMART)
    assert sent is request and not encoded.changed


def test_provider_setting_applies_when_the_request_says_nothing() -> None:
    """Without a request field, the provider's `encoding` setting decides."""
    request = _request()
    assert outgoing(request, BodyEncoding.SMART)[0].body == "Don't"
    assert outgoing(request, BodyEncoding.EXACT)[0] is request


def test_unknown_request_encoding_is_refused() -> None:
    """A request `encoding` other than exact or smart is an invalid request naming the field."""
    with pytest.raises(InvalidRequest, match='field "encoding"'):
        _request(encoding="gsm7")


def test_provider_settings_take_an_encoding() -> None:
    """Every provider's settings accept `encoding: smart`, defaulting to exact."""
    settings = load(providers={"simulator": {"encoding": "smart"}, "plain": {"type": "simulator"}})
    parsed = settings.provider_settings()
    assert (parsed["simulator"].encoding, parsed["plain"].encoding) == (BodyEncoding.SMART, BodyEncoding.EXACT)
