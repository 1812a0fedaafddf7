"""The receipt deadline's rules that need no broker: the request field, the tiers, the order."""

from __future__ import annotations

import json

import pytest

from smsrelay import topology as t
from smsrelay.errors import InvalidRequest
from smsrelay.models import StatusEvent, parse_request
from smsrelay.otp.resend_deadline import resend_order


def _request(**extra: object) -> bytes:
    fields = {"id": "login-1", "to": "+14155550123", "body": "code 1234", **extra}
    return json.dumps(fields).encode()


def test_v1_otp_without_resend_after_is_valid_and_unchanged_on_the_wire() -> None:
    """A v1 producer that knows nothing of resend_after: accepted, and nothing is added."""
    request = parse_request(_request(kind="otp"))
    assert request.resend_after is None
    assert "resend_after" not in json.loads(request.to_wire())


def test_resend_after_travels_with_an_otp() -> None:
    """resend_after on an OTP is kept and republished as sent."""
    request = parse_request(_request(kind="otp", resend_after=30))
    assert request.resend_after == 30
    assert json.loads(request.to_wire())["resend_after"] == 30


def test_resend_after_is_part_of_no_digest() -> None:
    """The same OTP with or without resend_after is one message (the digest is unchanged)."""
    plain = parse_request(_request(kind="otp"))
    timed = parse_request(_request(kind="otp", resend_after=30))
    assert plain.digest(b"k") == timed.digest(b"k")


@pytest.mark.parametrize(
    ("extra", "reason"),
    [
        ({"resend_after": 30}, 'field "resend_after": only a kind "otp" message is resent'),
        ({"kind": "otp", "resend_after": 0}, "resend_after"),
        ({"kind": "otp", "resend_after": 3601}, "resend_after"),
        ({"kind": "otp", "resend_after": "soon"}, "resend_after"),
    ],
)
def test_bad_resend_after_is_refused_with_a_reason(extra: dict[str, object], reason: str) -> None:
    """resend_after on a non-OTP, or outside 1 to 3600 s, is refused naming the field."""
    with pytest.raises(InvalidRequest) as refused:
        parse_request(_request(**extra))
    assert reason in refused.value.reason


def test_events_say_resend_zero_unless_a_resend() -> None:
    """The event field defaults to 0, so consumers of v1 events see no change in meaning."""
    event = StatusEvent.model_validate({"id": "x", "state": "sent", "at": "2026-01-01T00:00:00Z"})
    assert event.resend == 0


@pytest.mark.parametrize(
    ("remaining", "tier"),
    [(0.2, 1.0), (1.0, 1.0), (4.9, 1.0), (5.0, 5.0), (29.0, 5.0), (45.0, 30.0), (3600, 300.0)],
)
def test_a_deadline_waits_in_the_longest_tier_not_beyond_it(remaining: float, tier: float) -> None:
    """Never later than the deadline but for the shortest tier; a short remainder waits 1 s."""
    assert t.resend_tier(remaining) == tier


def test_tier_queues_are_named_by_their_delay() -> None:
    """sms.resend.<ms>ms, like the retry tiers."""
    assert [t.resend_queue(x) for x in t.RESEND_TIERS] == [
        "sms.resend.1000ms",
        "sms.resend.5000ms",
        "sms.resend.30000ms",
        "sms.resend.300000ms",
    ]


@pytest.mark.parametrize(
    ("order", "sender", "expected"),
    [
        (["a", "b", "c"], "a", ["b", "c"]),
        (["a", "b", "c"], "b", ["c", "a"]),
        (["a", "b"], "b", ["a"]),
        (["a"], "a", []),
        (["b", "c"], "a", ["b", "c"]),
    ],
)
def test_resend_goes_to_the_next_candidate_never_the_sender(
    order: list[str], sender: str, expected: list[str]
) -> None:
    """The plan's providers after the sender, wrapping round, without the sender."""
    assert resend_order(order, sender) == expected
