"""The v1 request contract: what parses, what is refused, and with which reason."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from smsrelay.errors import InvalidRequest
from smsrelay.models import (
    MAX_REQUEST_BYTES,
    Kind,
    SendRequest,
    State,
    parse_request,
    salvage_id,
    validate_request,
)

VALID: dict[str, Any] = {"id": "msg-1", "to": "+14155550123", "body": "Your parcel is on its way"}


def wire(**changes: Any) -> bytes:
    """A request on the wire: VALID with ``changes`` (a value of None drops the field)."""
    data = {**VALID, **changes}
    return json.dumps({k: v for k, v in data.items() if v is not None}).encode()


def reason_for(raw: bytes) -> str:
    """The reason ``parse_request`` gives for refusing ``raw``."""
    with pytest.raises(InvalidRequest) as caught:
        parse_request(raw)
    return caught.value.reason


def test_valid_e164_request_is_accepted_with_its_country() -> None:
    """An E.164 number passes unchanged and the country is derived from it."""
    request = parse_request(wire())
    assert request.id == "msg-1"
    assert request.to == "+14155550123"
    assert request.country == "US"
    assert request.kind is Kind.TRANSACTIONAL
    assert request.tags == {}


def test_number_with_spaces_and_punctuation_is_normalised_to_e164() -> None:
    """Separators in an international number are dropped."""
    assert parse_request(wire(to="+1 (415) 555-0123")).to == "+14155550123"


def test_national_number_with_region_is_normalised_to_e164_and_country() -> None:
    """A national number plus ``region`` becomes E.164; the region itself is not kept."""
    request = parse_request(wire(to="020 7946 0018", region="gb"))
    assert request.to == "+442079460018"
    assert request.country == "GB"
    assert request.region is None


def test_national_number_without_region_is_rejected() -> None:
    """Without a region a national number cannot be placed, so it is not valid."""
    assert reason_for(wire(to="020 7946 0018")) == 'field "to": not a valid phone number'


def test_not_json_is_rejected_with_line_and_column() -> None:
    """Broken JSON names where the parser gave up."""
    assert reason_for(b"{not json") == "invalid json at line 1 col 2"


def test_json_array_is_rejected_as_not_an_object() -> None:
    """A request must be a JSON object."""
    assert reason_for(b"[1, 2]") == "request must be a JSON object, got array"


@pytest.mark.parametrize(
    ("data", "kind"),
    [("text", "string"), (3, "number"), (None, "null"), (True, "boolean"), ([], "array")],
)
def test_non_object_json_is_rejected_naming_its_type(data: object, kind: str) -> None:
    """validate_request names the JSON type it got instead of an object."""
    with pytest.raises(InvalidRequest) as caught:
        validate_request(data)
    assert caught.value.reason == f"request must be a JSON object, got {kind}"


@pytest.mark.parametrize("field", ["id", "to", "body"])
def test_missing_required_field_is_rejected_by_name(field: str) -> None:
    """Each of id, to and body is required, and the reason names the field."""
    assert reason_for(wire(**{field: None})) == f'field "{field}": required'


def test_unknown_field_is_rejected() -> None:
    """Fields outside the v1 contract are refused rather than silently dropped."""
    assert reason_for(wire(foo=1)) == 'unknown field "foo"'


@pytest.mark.parametrize("to", ["12345", "+1415555012", "+999123456789", "not a number"])
def test_invalid_phone_number_is_rejected(to: str) -> None:
    """A number that phonenumbers does not consider valid is refused."""
    assert reason_for(wire(to=to)) == 'field "to": not a valid phone number'


def test_body_over_the_size_limit_is_rejected_before_parsing() -> None:
    """A 10 MB request is refused by its size alone, with the limit in the reason."""
    raw = b"x" * (10 * 1024 * 1024)
    assert reason_for(raw) == f"request is {len(raw)} bytes, the limit is {MAX_REQUEST_BYTES}"


def test_invalid_utf8_is_rejected_with_its_offset() -> None:
    """Bytes that are not UTF-8 are refused, naming the first bad byte."""
    raw = b'{"id":"msg-1","to":"+14155550123","body":"\xff"}'
    offset = raw.index(b"\xff")
    assert reason_for(raw) == f"body is not valid UTF-8 at byte {offset}"


def test_lone_surrogate_escape_in_body_is_rejected() -> None:
    """A JSON escape that decodes to an unpaired surrogate cannot be sent, so it is refused."""
    reason = reason_for(b'{"id":"msg-1","to":"+14155550123","body":"\\ud800"}')
    assert reason.startswith('field "body":')


def test_body_of_1600_characters_is_accepted() -> None:
    """1600 characters is the largest body (ten concatenated parts)."""
    assert len(parse_request(wire(body="a" * 1600)).body) == 1600


def test_body_of_1601_characters_is_rejected() -> None:
    """One character over the limit is refused with the limit in the reason."""
    assert reason_for(wire(body="a" * 1601)) == (
        'field "body": String should have at most 1600 characters'
    )


def test_empty_body_is_rejected() -> None:
    """There is nothing to send in an empty body."""
    assert reason_for(wire(body="")).startswith('field "body":')


@pytest.mark.parametrize("bad_id", ["has space", "slash/ed", "é", "", "a" * 65, "abc\n"])
def test_id_outside_the_allowed_pattern_is_rejected(bad_id: str) -> None:
    """An id must be 1-64 characters of letters, digits and ``._:-``."""
    assert reason_for(wire(id=bad_id)).startswith('field "id": String should match pattern')


def test_id_of_64_allowed_characters_is_accepted() -> None:
    """64 characters drawn from the allowed set is the longest id."""
    message_id = ("Ab0._:-" * 10)[:64]
    assert parse_request(wire(id=message_id)).id == message_id


def test_unknown_kind_is_rejected() -> None:
    """kind is one of otp, transactional, marketing."""
    assert reason_for(wire(kind="spam")) == (
        "field \"kind\": Input should be 'otp', 'transactional' or 'marketing'"
    )


def test_naive_expires_at_is_rejected() -> None:
    """An expiry without a UTC offset is ambiguous, so it is refused."""
    assert reason_for(wire(expires_at="2030-01-01T00:00:00")) == (
        'field "expires_at": Input should have timezone info'
    )


def test_expires_at_with_offset_is_accepted() -> None:
    """An expiry with an offset keeps the instant it names."""
    request = parse_request(wire(expires_at="2030-01-01T02:00:00+02:00"))
    assert request.expires_at == datetime(2030, 1, 1, tzinfo=UTC)


def test_sixteen_tags_are_accepted() -> None:
    """Up to 16 tags travel with the message."""
    tags = {f"k{i}": "v" for i in range(16)}
    assert parse_request(wire(tags=tags)).tags == tags


def test_more_than_sixteen_tags_are_rejected() -> None:
    """A 17th tag is refused."""
    tags = {f"k{i}": "v" for i in range(17)}
    assert reason_for(wire(tags=tags)) == 'field "tags": at most 16 entries'


def test_country_field_is_rejected() -> None:
    """country is derived from the number; a producer cannot set it."""
    assert reason_for(wire(country="GB")) == 'unknown field "country"'


def test_sender_python_name_is_rejected() -> None:
    """The wire name of the sender is ``from``; the Python attribute name is not accepted."""
    assert reason_for(wire(sender="ACME")) == 'unknown field "sender"'


def test_from_field_sets_the_sender() -> None:
    """``from`` is the sender's wire name."""
    assert parse_request(wire(**{"from": "ACME"})).sender == "ACME"


def test_deeply_nested_json_is_rejected_as_invalid() -> None:
    """A body of 60 000 ``[`` is invalid JSON and must be refused, not crash the parser."""
    raw = b"[" * 60_000
    assert len(raw) < MAX_REQUEST_BYTES
    assert reason_for(raw).startswith("invalid json")


def test_request_without_expiry_never_expires() -> None:
    """No expires_at: is_expired is always False."""
    assert not parse_request(wire()).is_expired(datetime(2999, 1, 1, tzinfo=UTC))


def test_request_is_expired_from_its_expiry_instant_on() -> None:
    """is_expired is False before expires_at and True at and after it."""
    at = datetime(2030, 1, 1, tzinfo=UTC)
    request = parse_request(wire(expires_at=at.isoformat()))
    assert not request.is_expired(at - timedelta(microseconds=1))
    assert request.is_expired(at)
    assert request.is_expired(at + timedelta(days=1))


def test_is_expired_defaults_to_now() -> None:
    """Without an explicit time, a past expiry counts as expired and a future one does not."""
    past = (datetime.now(UTC) - timedelta(minutes=1)).isoformat()
    future = (datetime.now(UTC) + timedelta(hours=1)).isoformat()
    assert parse_request(wire(expires_at=past)).is_expired()
    assert not parse_request(wire(expires_at=future)).is_expired()


def test_to_wire_round_trips_through_parse_request() -> None:
    """What to_wire publishes parses back into an equal request."""
    request = parse_request(
        wire(
            to="020 7946 0018",
            region="GB",
            kind="otp",
            expires_at="2030-01-01T00:00:00+00:00",
            tags={"campaign": "spring"},
            **{"from": "ACME"},
        )
    )
    again = parse_request(request.to_wire())
    assert again == request
    assert again.country == "GB"


def test_to_wire_uses_wire_names_and_omits_internal_fields() -> None:
    """to_wire writes ``from`` (not ``sender``) and never ``country`` or an empty region."""
    data = json.loads(parse_request(wire(**{"from": "ACME"})).to_wire())
    assert data["from"] == "ACME"
    assert "sender" not in data
    assert "country" not in data
    assert "region" not in data


def test_request_is_immutable() -> None:
    """A parsed request cannot be changed on its way through the worker."""
    request = parse_request(wire())
    with pytest.raises(ValueError):
        request.body = "changed"  # type: ignore[misc]
    assert isinstance(request, SendRequest)


def test_only_accepted_is_not_a_final_state() -> None:
    """Every state but accepted means the worker will not send the message again."""
    assert [s for s in State if not s.final] == [State.ACCEPTED]


def test_salvage_id_reads_a_well_formed_id_from_a_bad_request() -> None:
    """An invalid request's id is recovered when readable; nesting bombs and bad ids give None."""
    assert salvage_id(b'{"id": "m-1", "to": "12"}') == "m-1"
    assert salvage_id(b"[" * 30_000 + b"]" * 30_000) is None
    assert salvage_id(b'{"id": "has space"}') is None
    assert salvage_id(b'{"id": 7}') is None


@pytest.mark.parametrize("char", ["\x00", "\x07", "\x1b", "\x7f", "\x85"])
def test_control_character_in_body_is_rejected_naming_body(char: str) -> None:
    """A NUL (or another control character no provider carries) in the body is refused as "body"."""
    reason = reason_for(wire(body=f"code{char}1234"))
    assert reason == f'field "body": control character U+{ord(char):04X} at position 4'


def test_line_breaks_and_tabs_in_body_are_accepted() -> None:
    """LF and CR (GSM 03.38 has them) and a tab stay in the body."""
    assert parse_request(wire(body="line 1\r\nline 2\tend")).body == "line 1\r\nline 2\tend"


@pytest.mark.parametrize("sender", ["AC\x00ME", "ACME\n", "AC\tME"])
def test_control_character_in_from_is_rejected_naming_from(sender: str) -> None:
    """A sender id carries no control character at all, not even a line break."""
    assert reason_for(wire(**{"from": sender})).startswith('field "from": control character')


def test_control_character_in_a_tag_is_rejected_naming_tags() -> None:
    """Tags travel in events and headers: a NUL in a key or a value is refused as "tags"."""
    assert reason_for(wire(tags={"k": "v\x00"})).startswith('field "tags":')
    assert reason_for(wire(tags={"k\x00": "v"})).startswith('field "tags":')


def test_digest_is_the_same_for_the_same_message_written_differently() -> None:
    """A national number with its region, key order and an expiry offset do not change the digest."""
    one = parse_request(
        wire(to="+442079460018", expires_at="2030-01-01T01:00:00+01:00", tags={"a": "1", "b": "2"})
    )
    other = parse_request(
        wire(
            to="020 7946 0018",
            region="GB",
            expires_at="2030-01-01T00:00:00Z",
            tags={"b": "2", "a": "1"},
        )
    )
    assert one.digest() == other.digest()


@pytest.mark.parametrize(
    "change",
    [
        {"body": "another text"},
        {"to": "+14155550124"},
        {"from": "ACME"},
        {"kind": "marketing"},
        {"expires_at": "2030-01-01T00:00:00Z"},
        {"tags": {"a": "1"}},
    ],
)
def test_digest_changes_with_each_field_that_defines_the_message(change: dict[str, Any]) -> None:
    """Each of to, body, from, kind, expires_at and tags is part of the digest; the id is not."""
    assert parse_request(wire(**change)).digest() != parse_request(wire()).digest()
    assert parse_request(wire(id="other")).digest() == parse_request(wire()).digest()


def test_otp_code_counts_in_the_digest_only_with_a_key() -> None:
    """An OTP's code changes the keyed digest; without a key the code is left out (never stored)."""
    first = parse_request(wire(kind="otp", body="Your code is 123456"))
    second = parse_request(wire(kind="otp", body="Your code is 654321"))
    assert first.digest(b"k") != second.digest(b"k")
    assert first.digest() == second.digest()
    assert first.digest(b"k") != first.digest(b"other key")


def test_explicit_null_from_is_no_sender() -> None:
    """``"from": null`` is accepted as no sender (the control-character check skips it)."""
    assert parse_request(b'{"id":"a","to":"+14155550123","body":"x","from":null}').sender is None
