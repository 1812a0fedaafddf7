"""Codes: drawn from the CSPRNG with the asked length, hashed with key and salt, rendered."""

from __future__ import annotations

import pytest

from smsrelay.otp import verify


@pytest.mark.parametrize("length", [4, 6, 10])
def test_code_has_the_asked_number_of_digits(length: int) -> None:
    """A code is exactly `length` decimal digits, leading zeros kept."""
    codes = {verify.generate_code(length) for _ in range(50)}
    assert all(len(c) == length and c.isdigit() for c in codes)
    assert len(codes) > 1


@pytest.mark.parametrize("length", [3, 11])
def test_code_length_outside_4_to_10_is_refused(length: int) -> None:
    """Lengths outside 4..10 raise."""
    with pytest.raises(ValueError):
        verify.generate_code(length)


def test_hash_depends_on_key_and_salt() -> None:
    """The same code under another key or salt hashes differently; the right one matches."""
    salt = verify.new_salt()
    stored = verify.hash_code(b"k1", salt, "123456")
    assert verify.code_matches(b"k1", salt, stored, "123456")
    assert not verify.code_matches(b"k2", salt, stored, "123456")
    assert not verify.code_matches(b"k1", verify.new_salt(), stored, "123456")
    assert not verify.code_matches(b"k1", salt, stored, "123457")


def test_render_uses_template_then_locale_then_english() -> None:
    """The caller's template wins, then the locale's text, then English."""
    assert verify.render("42", "Code: {code}!", "fr") == "Code: 42!"
    assert verify.render("42", None, "fr-CA") == "Votre code de vérification est 42"
    assert verify.render("42", None, "xx") == "Your verification code is 42"
