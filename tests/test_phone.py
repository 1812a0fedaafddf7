"""Phone numbers (normalise, mask) and what a body costs in SMS parts."""

from __future__ import annotations

import pytest

from smsrelay import phone, segments


def test_e164_number_is_normalised_with_its_country() -> None:
    """An E.164 number comes back unchanged with its ISO country."""
    assert phone.normalise("+14155550123") == phone.Recipient("+14155550123", "US")


@pytest.mark.parametrize(
    ("number", "region", "e164", "country"),
    [
        ("020 7946 0018", "GB", "+442079460018", "GB"),
        ("020 7946 0018", "gb", "+442079460018", "GB"),
        ("(415) 555-0123", "US", "+14155550123", "US"),
        ("06 12 34 56 78", "FR", "+33612345678", "FR"),
    ],
)
def test_national_number_with_region_is_normalised(
    number: str, region: str, e164: str, country: str
) -> None:
    """A national number and its region (any case) give E.164 and the country."""
    assert phone.normalise(number, region) == phone.Recipient(e164, country)


def test_region_does_not_override_an_international_number() -> None:
    """A number with ``+`` keeps its own country whatever region is given."""
    assert phone.normalise("+14155550123", "GB").country == "US"


@pytest.mark.parametrize(
    ("number", "region"),
    [("12345", None), ("020 7946 0018", None), ("+1415555012", None), ("abc", "US"), ("", None)],
)
def test_invalid_number_raises_value_error(number: str, region: str | None) -> None:
    """Anything phonenumbers cannot place or validate is a ValueError."""
    with pytest.raises(ValueError, match="not a valid phone number"):
        phone.normalise(number, region)


def test_mask_keeps_country_area_and_last_two_digits() -> None:
    """``+14155550123`` is logged as ``+1415*****23``."""
    assert phone.mask("+14155550123") == "+1415*****23"


def test_mask_keeps_the_length_of_the_number() -> None:
    """The masked form is as long as the number, so numbers stay comparable by shape."""
    assert phone.mask("+442079460018") == "+4420******18"


@pytest.mark.parametrize("length", range(1, 21))
def test_mask_never_reveals_more_than_seven_digits(length: int) -> None:
    """Whatever its length, with or without ``+``, at most 7 digits survive masking."""
    for number in ("9" * length, "+" + "9" * (length - 1)):
        assert sum(c.isdigit() for c in phone.mask(number)) <= 7


def test_mask_hides_short_strings_entirely() -> None:
    """Seven characters or fewer are all stars."""
    assert phone.mask("1234567") == "*******"


@pytest.mark.parametrize(
    ("body", "parts"),
    [
        ("", 1),
        ("a", 1),
        ("a" * 160, 1),
        ("a" * 161, 2),
        ("a" * 153 * 2, 2),
        ("a" * (153 * 2 + 1), 3),
    ],
)
def test_gsm_body_is_160_in_one_part_then_153_per_part(body: str, parts: int) -> None:
    """GSM-7 fits 160 characters in one part, 153 per part when concatenated."""
    assert segments.count(body) == parts


def test_gsm_extended_characters_count_double() -> None:
    """``€`` and friends take an escape plus a character: 80 fit in one part, 81 do not."""
    assert segments.count("€" * 80) == 1
    assert segments.count("€" * 81) == 2
    assert segments.count("a" * 159 + "[") == 2


def test_accented_gsm_letters_stay_gsm() -> None:
    """Letters of the GSM alphabet like é and ñ do not switch the body to UCS-2."""
    assert segments.count("é" * 160) == 1


@pytest.mark.parametrize(
    ("body", "parts"),
    [("ж" * 70, 1), ("ж" * 71, 2), ("ж" * 67 * 2, 2), ("ж" * (67 * 2 + 1), 3)],
)
def test_ucs2_body_is_70_in_one_part_then_67_per_part(body: str, parts: int) -> None:
    """One non-GSM character makes the body UCS-2: 70 in one part, 67 per part."""
    assert segments.count(body) == parts


def test_one_non_gsm_character_switches_the_whole_body_to_ucs2() -> None:
    """160 GSM characters fit one part, but not with a Cyrillic letter among them."""
    assert segments.count("a" * 69 + "ж") == 1
    assert segments.count("a" * 70 + "ж") == 2


def test_emoji_counts_as_two_ucs2_units() -> None:
    """Characters outside the BMP take two UTF-16 units: 35 emoji fit one part, 36 do not."""
    assert segments.count("😀" * 35) == 1
    assert segments.count("😀" * 36) == 2
    assert segments.count("a" * 69 + "😀") == 2
