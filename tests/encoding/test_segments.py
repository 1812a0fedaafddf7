"""Exact SMS parts: the rule-built corpus and properties that hold for every body."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from smsrelay import segments as legacy
from smsrelay.encoding import Encoding, count, segment
from smsrelay.encoding.segments import GSM7_BASIC, GSM7_EXTENSION
from tests.encoding.corpus import GSM_BASIC, GSM_EXTENSION, Case, cases

CORPUS = cases()


def test_corpus_has_at_least_500_cases() -> None:
    """The corpus built from the rules holds at least 500 distinct bodies."""
    assert len({case.body for case in CORPUS}) >= 500


@pytest.mark.parametrize("case", CORPUS, ids=[case.name for case in CORPUS])
def test_corpus_case(case: Case) -> None:
    """Each rule-built body is sent in the encoding and number of parts 23.038 gives."""
    result = segment(case.body)
    assert (result.encoding.value, result.count) == (case.encoding, case.parts)


def test_alphabet_is_23038_default_and_extension() -> None:
    """The GSM-7 sets are the 127 default-alphabet characters and the 10 of the extension table."""
    assert (len(GSM7_BASIC), len(GSM7_EXTENSION)) == (127, 10)
    assert set(GSM_BASIC) == GSM7_BASIC and set(GSM_EXTENSION) == GSM7_EXTENSION


def test_escape_pair_moves_whole_to_next_part() -> None:
    """An extension character that would straddle septet 153 starts part 2; part 1 keeps 152."""
    result = segment("a" * 152 + "€" + "a" * 10)
    assert [p.units for p in result.parts] == [152, 12]
    assert result.parts[1].text.startswith("€")


def test_surrogate_pair_moves_whole_to_next_part() -> None:
    """An emoji that would straddle unit 67 starts part 2; part 1 keeps 66 units."""
    result = segment("a" * 66 + "😀" + "a" * 10)
    assert [p.units for p in result.parts] == [66, 12]
    assert [p.characters for p in result.parts] == [66, 11]


def test_result_is_typed_with_parts_and_capacity() -> None:
    """A 2-part GSM-7 body reports its encoding, per-part units and the 153-septet capacity."""
    result = segment("x" * 200)
    assert result.encoding is Encoding.GSM7
    assert (result.count, result.units, result.capacity) == (2, 200, 153)
    assert [(p.characters, p.units) for p in result.parts] == [(153, 153), (47, 47)]


def test_legacy_module_still_counts() -> None:
    """smsrelay.segments (used by providers) answers as the encoding package does."""
    assert legacy.count("€" * 81) == count("€" * 81) == 2
    assert legacy.is_gsm7("Ø") and not legacy.is_gsm7("’")


def test_worst_case_body_is_linear() -> None:
    """A 100 000-character body (far above the 1600 allowed) is segmented, no unit lost."""
    result = segment("😀€" * 50_000)
    assert result.units == 150_000
    assert -(-150_000 // 67) <= result.count <= -(-150_000 // 66)


bodies = st.text(
    alphabet=st.one_of(
        st.sampled_from(GSM_BASIC + GSM_EXTENSION),
        st.sampled_from(GSM_EXTENSION),
        st.characters(codec="utf-8"),
        st.characters(min_codepoint=0x10000, max_codepoint=0x1FAFF),
    ),
    max_size=700,
)


def _units(text: str, encoding: Encoding) -> int:
    if encoding is Encoding.GSM7:
        return sum(2 if c in GSM7_EXTENSION else 1 for c in text)
    return len(text.encode("utf-16-le", "surrogatepass")) // 2


@given(bodies)
def test_parts_rebuild_the_body(body: str) -> None:
    """Joined in order, the parts are exactly the body."""
    assert "".join(p.text for p in segment(body).parts) == body


@given(bodies)
def test_units_are_counted_in_the_encoding(body: str) -> None:
    """Each part's units are its septets (escape = 2) or its UTF-16 code units."""
    result = segment(body)
    assert all(p.units == _units(p.text, result.encoding) for p in result.parts)


@given(bodies)
def test_no_part_exceeds_its_capacity(body: str) -> None:
    """One part holds at most 160/70 units; each part of a longer body at most 153/67."""
    result = segment(body)
    assert all(p.units <= result.capacity for p in result.parts)
    assert (result.count == 1) == (result.units <= result.encoding.single_capacity)


@given(bodies)
def test_parts_are_as_few_as_possible(body: str) -> None:
    """A part is closed only when the next character would not fit in it (greedy is optimal)."""
    result = segment(body)
    for part, following in zip(result.parts, result.parts[1:], strict=False):
        first = following.text[0]
        assert part.units + _units(first, result.encoding) > result.capacity


@given(bodies)
def test_encoding_is_gsm7_exactly_when_every_character_is(body: str) -> None:
    """GSM-7 is chosen iff every character is in the default alphabet or its extension."""
    gsm = all(c in GSM7_BASIC or c in GSM7_EXTENSION for c in body)
    assert (segment(body).encoding is Encoding.GSM7) == gsm
