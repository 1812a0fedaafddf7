"""Log redaction: no full phone number, body or OTP reaches a log line."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
import structlog

from smsrelay.logging import configure, redact


def redacted(**event: Any) -> dict[str, Any]:
    """``event`` after the redact processor."""
    return dict(redact(None, "info", dict(event)))


@pytest.fixture
def restore_structlog() -> Iterator[None]:
    """Undo a test's configure(), so later tests do not write to its captured stderr."""
    yield
    structlog.reset_defaults()


@pytest.mark.parametrize(
    ("text", "masked"),
    [
        ("+14155550123", "+1415*****23"),
        ("+1 415 555 0123", "+1415*****23"),
        ("+1 (415) 555-0123", "+1415*****23"),
        ("+44 20 7946 0018", "+4420******18"),
        ("14155550123", "1415*****23"),
    ],
)
def test_full_number_is_masked(text: str, masked: str) -> None:
    """A number, E.164 with or without separators or bare digits, is replaced by its mask."""
    assert redacted(to=text)["to"] == masked


def test_number_is_masked_anywhere_inside_a_string() -> None:
    """Numbers embedded in free text are masked in place, the text around them kept."""
    event = redacted(event="sending to +14155550123 now", note="call 14155550123 or +14155550123.")
    assert event["event"] == "sending to +1415*****23 now"
    assert event["note"] == "call 1415*****23 or +1415*****23."


def test_number_is_masked_under_any_key() -> None:
    """Masking does not depend on the key's name."""
    event = redacted(whatever="+442079460018", error="21211 invalid To +442079460018")
    assert event["whatever"] == "+4420******18"
    assert "+442079460018" not in event["error"]


@pytest.mark.parametrize("key", ["body", "otp"])
def test_body_and_otp_are_redacted(key: str) -> None:
    """A message body or one-time code never reaches the log, whatever it contains."""
    assert redacted(**{key: "Your code is 123456"})[key] == "[redacted]"


@pytest.mark.parametrize(
    "value",
    [
        "2026-11-28T05:04:56.832793Z",
        "2026-11-28T05:04:56+00:00",
        "0.123456789",
        "1234.5678",
        "21211",
        "msg-1234567890123",
        "order_1234567890",
        "SM1234567890abcdef1234567890abcdef",
        "9f1c2d3e-4b5a-6978-8796-a5b4c3d2e1f0",
    ],
)
def test_timestamps_durations_codes_and_ids_are_left_alone(value: str) -> None:
    """Values that merely contain digits are not mistaken for phone numbers."""
    assert redacted(value=value)["value"] == value


def test_non_string_values_pass_through() -> None:
    """Numbers, booleans and None are not rewritten."""
    event = redacted(attempt=3, latency=0.25, ok=True, missing=None)
    assert event == {"attempt": 3, "latency": 0.25, "ok": True, "missing": None}


def test_number_inside_a_list_or_dict_value_is_masked() -> None:
    """``log.info(..., recipients=[number])`` does not leak the number either."""
    event = redacted(recipients=["+14155550123"], extra={"to": "+14155550123"})
    assert "+14155550123" not in json.dumps(event)


def test_json_log_line_does_not_contain_the_number(
    restore_structlog: None, capsys: pytest.CaptureFixture[str]
) -> None:
    """End to end: a configured JSON logger writes the mask, never the number."""
    # configure() binds sys.stderr as it is at the call: capsys's stream of this phase.
    configure("json", "debug")
    structlog.get_logger("test").info(
        "sent to +14155550123", to="+1 415 555 0123", body="code 1234", id="msg-1"
    )
    line = capsys.readouterr().err.strip()
    record = json.loads(line)
    assert "4155550123" not in line
    assert "555 0123" not in line
    assert "code 1234" not in line
    assert record["event"] == "sent to +1415*****23"
    assert record["to"] == "+1415*****23"
    assert record["id"] == "msg-1"
    assert record["level"] == "info"


def test_logged_exception_is_rendered_with_numbers_masked(
    restore_structlog: None, capsys: pytest.CaptureFixture[str]
) -> None:
    """log.exception keeps the error in the JSON line, and masks the number inside it."""
    configure("json", "debug")
    try:
        raise ValueError("provider refused +14155550123")
    except ValueError:
        structlog.get_logger("test").exception("provider_crashed")
    line = capsys.readouterr().err.strip()
    assert "ValueError" in line
    assert "+14155550123" not in line


@pytest.mark.parametrize(
    ("text", "kept"),
    [
        (
            "(sqlite3.IntegrityError) poison\n[SQL: INSERT INTO messages VALUES (?, ?)]\n"
            "[parameters: ('msg-1', 'secret-body-1 for you')]\n(Background on this error)",
            "[SQL: INSERT INTO messages VALUES (?, ?)]",
        ),
        (
            "(asyncpg.Error) invalid input for query argument $2: 'secret-body-1' (expected int)",
            "invalid input for query argument $2:",
        ),
        (
            'new row violates check constraint "c"\nDETAIL:  Failing row contains (secret-body-1).',
            'violates check constraint "c"',
        ),
        ("duplicate key\nKey (id)=(secret-body-1) already exists.", "duplicate key"),
    ],
)
def test_sql_parameters_and_quoted_values_are_cut_from_any_text(text: str, kept: str) -> None:
    """What drivers print of a statement's values is cut; the statement and the error stay."""
    cut = redacted(exception=text)["exception"]
    assert "secret-body-1" not in cut
    assert kept in cut


async def test_store_error_logged_as_the_worker_does_holds_no_body(
    restore_structlog: None, capsys: pytest.CaptureFixture[str], tmp_path: Any
) -> None:
    """A store error logged with log.exception (as amqp.py does) shows neither body nor number."""
    from smsrelay.models import validate_request
    from smsrelay.store import SqlStore, upgrade

    store = SqlStore.from_url(f"sqlite+aiosqlite:///{tmp_path}/smsrelay.db")
    await upgrade(store.engine)
    async with store.engine.begin() as conn:
        await conn.exec_driver_sql(
            "CREATE TRIGGER no_poison BEFORE INSERT ON messages WHEN NEW.body LIKE 'poison%'"
            " BEGIN SELECT RAISE(ABORT, 'poison'); END"
        )
    configure("json", "debug")
    request = validate_request(
        {"id": "msg-1", "to": "+14155550123", "body": "poison secret-body-1"}
    )
    try:
        await store.claim(request, "alpha")
    except Exception:
        structlog.get_logger("test").exception("delivery_failed", message_id="msg-1")
    finally:
        await store.close()
    line = capsys.readouterr().err.strip()
    assert "delivery_failed" in line
    assert "secret-body-1" not in line
    assert "4155550123" not in line


def test_error_raised_while_handling_a_store_error_hides_the_driver_text(
    restore_structlog: None, capsys: pytest.CaptureFixture[str]
) -> None:
    """An error during a store error keeps its traceback, cut where the store error begins."""
    from smsrelay.errors import StoreUnavailable

    configure("json", "debug")
    try:
        try:
            try:
                raise ValueError("driver says: cannot take secret-body-2")
            except ValueError as exc:
                raise StoreUnavailable("the database is unavailable (SQLSTATE P0001)") from exc
        except StoreUnavailable:
            raise RuntimeError("publish failed")  # noqa: B904 - the implicit chain is the point
    except RuntimeError:
        structlog.get_logger("test").exception("delivery_failed")
    line = capsys.readouterr().err.strip()
    assert "publish failed" in line
    assert "secret-body-2" not in line
