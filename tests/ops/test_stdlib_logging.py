"""Library log lines (aio-pika, aiormq, uvicorn, SQLAlchemy) come out as our JSON, masked."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator

import pytest
import structlog

from smsrelay import logging as smslog


@pytest.fixture(autouse=True)
def restore_logging() -> Iterator[None]:
    """Put the root logger and structlog back, so later tests do not write to capsys's stream."""
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)
    structlog.reset_defaults()


def lines(err: str) -> list[dict[str, object]]:
    """Every stderr line, each of which must be one JSON object."""
    return [json.loads(line) for line in err.splitlines()]


def test_library_warning_is_one_json_line_with_numbers_masked(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """A stdlib warning with a traceback renders as one JSON object, the number in it masked."""
    smslog.configure("json", "info")
    try:
        raise ConnectionError("peer +14155550123 went away")
    except ConnectionError:
        logging.getLogger("aio_pika.robust_connection").warning("reconnecting", exc_info=True)
    [line] = lines(capsys.readouterr().err)
    assert line["event"] == "reconnecting" and line["level"] == "warning"
    assert line["logger"] == "aio_pika.robust_connection"
    assert "ConnectionError" in str(line["exception"])
    assert "+14155550123" not in json.dumps(line) and "+1415*****23" in str(line["exception"])


def test_library_info_chatter_is_not_logged(capsys: pytest.CaptureFixture[str]) -> None:
    """uvicorn's and SQLAlchemy's INFO lines stay out; our own info lines stay in."""
    smslog.configure("json", "info")
    logging.getLogger("uvicorn.error").info("Started server process")
    logging.getLogger("sqlalchemy.engine.Engine").info("SELECT 1")
    smslog.get_logger("test").info("ours")
    assert [line["event"] for line in lines(capsys.readouterr().err)] == ["ours"]


def test_failed_connect_is_not_logged_twice(capsys: pytest.CaptureFixture[str]) -> None:
    """aiormq's ERROR for a failed connect is dropped: the raised error already says it."""
    smslog.configure("json", "info")
    logging.getLogger("aiormq.connection").error("error when creating transport: %r", OSError())
    assert capsys.readouterr().err == ""


def test_configuring_twice_keeps_one_handler_and_others(capsys: pytest.CaptureFixture[str]) -> None:
    """A second configure replaces smsrelay's handler only: one line per record, others' handlers kept."""
    other = logging.NullHandler()
    logging.getLogger().addHandler(other)
    smslog.configure("json", "info")
    smslog.configure("json", "info")
    logging.getLogger("aio_pika").warning("once")
    assert [line["event"] for line in lines(capsys.readouterr().err)] == ["once"]
    assert other in logging.getLogger().handlers
