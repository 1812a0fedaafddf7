"""The receipt-verification helpers the adapters share (smsrelay.providers.webhooks).

Each adapter's own tests check its scheme end to end; these pin the shared steps.
"""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime

import pytest

from smsrelay.errors import BadSignature, StaleReceipt
from smsrelay.providers.base import Webhook
from smsrelay.providers.webhooks import (
    check_timestamp,
    check_window,
    form_params,
    hmac_b64,
    query_params,
    report_object,
    same,
)

NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


@pytest.mark.parametrize("offset", [-300, 0, 300, 299.5])
def test_timestamp_within_the_window_passes(offset: float) -> None:
    """A timestamp up to the window away from now, either side, is accepted."""
    check_timestamp(str(NOW.timestamp() + offset), NOW, 300, "acme receipt")


@pytest.mark.parametrize("offset", [-301, 301, -300.5])
def test_timestamp_outside_the_window_is_stale(offset: float) -> None:
    """Beyond the window, either side, is StaleReceipt naming the skew and the window."""
    with pytest.raises(
        StaleReceipt, match=r"acme receipt timestamp is -?\d+s off, the window is 300s"
    ):
        check_timestamp(str(NOW.timestamp() + offset), NOW, 300, "acme receipt")


@pytest.mark.parametrize("value", [None, "", "soon", "12:00"])
def test_missing_or_unreadable_timestamp_is_a_bad_signature(value: str | None) -> None:
    """A timestamp that is absent or not Unix seconds is BadSignature, not StaleReceipt."""
    with pytest.raises(BadSignature, match="acme receipt timestamp"):
        check_timestamp(value, NOW, 300, "acme receipt")


def test_same_compares_text() -> None:
    """same() is equality of the two texts (constant-time underneath), non-ASCII included."""
    assert same("abc", "abc")
    assert not same("abc", "abd")
    assert not same("", "abc")
    assert not same("é", "e")


def test_hmac_b64_is_base64_of_the_hmac() -> None:
    """RFC 4231 test case 2 (SHA-256), base64-encoded; SHA-1 when asked."""
    assert hmac_b64(b"Jefe", b"what do ya want for nothing?") == (
        "W9zBRr9gdU5qBCQmCJV1x1oAPwidJzmDnexYuWTsOEM="
    )
    assert hmac_b64(b"Jefe", b"what do ya want for nothing?", hashlib.sha1) == (
        "7/zfauXrL6LSdBbV8YTfnCWafHk="
    )


def test_report_object_refuses_what_is_not_a_json_object() -> None:
    """An authentic report must be a JSON object: anything else is a ValueError."""
    assert report_object(b'{"a": 1}', "acme report") == {"a": 1}
    for body in (b"[]", b"not json", b""):
        with pytest.raises(ValueError):
            report_object(body, "acme report")


def test_form_and_query_params() -> None:
    """Form bodies keep blank values; the query comes from webhook.query, else the URL."""
    assert form_params(b"a=1&b=&a=2") == {"a": "2", "b": ""}
    from_url = Webhook("GET", "https://r/x?id=1&s=ok", {}, b"")
    assert query_params(from_url) == {"id": "1", "s": "ok"}
    given = Webhook("GET", "https://r/x?id=1", {}, b"", {"id": "2"})
    assert query_params(given) == {"id": "2"}


def test_nan_timestamp_is_stale() -> None:
    """A signed timestamp of NaN is outside every window, never inside it."""
    with pytest.raises(StaleReceipt):
        check_window(float("nan"), datetime.now(UTC), 300, "test")
