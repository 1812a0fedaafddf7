"""structlog set-up: JSON in production, readable in a terminal, numbers masked.

Every log line about a message carries its ``id`` (bound by the dispatcher). A
processor masks anything that looks like a full phone number, so a careless
``log.info(..., to=number)`` still cannot leak one. Database errors never bring their
statement's values into a line: a ``StoreError`` is logged as its own (value-free) text
without the driver's exception under it, and anything shaped like SQL parameters or a
driver's quoted value in any other text is cut out.
"""

from __future__ import annotations

import logging
import re
import sys
import traceback
from typing import Any

import structlog
from structlog.typing import EventDict, WrappedLogger

from smsrelay.errors import StoreError
from smsrelay.phone import mask

# "+" then digits with common separators, or a bare run of 9+ digits: phone numbers,
# but not timestamps, durations or error codes.
_NUMBER = re.compile(r"\+\d[\d ().-]{5,}\d|(?<![\w.-])\d{9,15}(?![\w.])")
_SECRET_KEYS = frozenset({"body", "otp", "otp_code", "auth_token", "password", "api_key", "token"})
# What drivers and SQLAlchemy print of a statement's values: SQLAlchemy's parameter
# list, asyncpg's "invalid input for query argument $1: '<value>'", PostgreSQL's
# DETAIL lines ("Failing row contains (...)", "Key (id)=(...)"). Each to the line's end.
_SQL_VALUES = re.compile(
    r"(\[(?:SQL )?parameters?:)[^\n]*"
    r"|(invalid input for query argument \$\d+:)[^\n]*"
    r"|(DETAIL:)[^\n]*"
    r"|(Failing row contains)[^\n]*"
    r"|(Key \()[^\n]*"
)


def _cut_sql_values(text: str) -> str:
    return _SQL_VALUES.sub(lambda m: next(g for g in m.groups() if g) + " [redacted]", text)


def _mask_value(value: Any) -> Any:
    if isinstance(value, str):
        value = _cut_sql_values(value)
        return _NUMBER.sub(lambda m: mask(re.sub(r"[\s().-]", "", m.group())), value)
    if isinstance(value, dict):
        return {k: "[redacted]" if k in _SECRET_KEYS else _mask_value(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set):
        return [_mask_value(v) for v in value]
    return value


def redact(_: WrappedLogger, __: str, event: EventDict) -> EventDict:
    """Drop secrets and bodies, mask phone numbers in every value."""
    for key in list(event):
        if key in _SECRET_KEYS:
            event[key] = "[redacted]"
        else:
            event[key] = _mask_value(event[key])
    return event


def summarise_store_errors(_: WrappedLogger, __: str, event: EventDict) -> EventDict:
    """A ``StoreError`` is logged as ``error``, its text, without the traceback under it.

    Its text names the database error without values; the driver exception it was
    raised from quotes the statement and may quote what was in it. An error raised
    while handling a ``StoreError`` keeps its traceback, cut at the store error.
    """
    exc_info = event.get("exc_info")
    if exc_info is True:
        exc_info = sys.exc_info()
    exc = exc_info[1] if isinstance(exc_info, tuple) else exc_info
    if not isinstance(exc, BaseException) or not any(
        isinstance(e, StoreError) for e in _chain(exc)
    ):
        return event
    event.pop("exc_info")
    if isinstance(exc, StoreError):
        event["error"] = f"{type(exc).__name__}: {exc}"
    else:
        event["exception"] = _format_up_to_store_error(exc)
    return event


def _chain(exc: BaseException) -> list[BaseException]:
    """``exc`` and what it was raised from or while handling, newest first."""
    found: list[BaseException] = []
    current: BaseException | None = exc
    while current is not None and all(current is not e for e in found):
        found.append(current)
        current = current.__cause__ or (
            None if current.__suppress_context__ else current.__context__
        )
    return found


def _format_up_to_store_error(exc: BaseException) -> str:
    parts: list[str] = []
    for link in _chain(exc):
        if isinstance(link, StoreError):
            parts.append(f"{type(link).__name__}: {link}\n")
            break
        parts.append("".join(traceback.format_exception(link, chain=False)))
    return "\nDuring or because of the above:\n\n".join(reversed(parts))


def configure(fmt: str = "auto", level: str = "info") -> None:
    """Configure structlog once, at process start."""
    if fmt == "auto":
        fmt = "console" if sys.stderr.isatty() else "json"
    renderer: Any = (
        structlog.dev.ConsoleRenderer(colors=False)
        if fmt == "console"
        else structlog.processors.JSONRenderer()
    )
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            summarise_store_errors,
            # Render tracebacks to text first, so that redact masks numbers in them too.
            structlog.processors.format_exc_info,
            redact,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(logging.getLevelName(level.upper())),
        logger_factory=structlog.PrintLoggerFactory(file=sys.stderr),
        cache_logger_on_first_use=True,
    )
    route_stdlib_logging(renderer, level)


# Libraries that log through the standard library, and the least level worth a line:
# their INFO chatter (uvicorn's start banner, SQLAlchemy's echo) is ours to say or not.
_LIBRARY_LEVELS = {
    "aio_pika": logging.WARNING,
    "aiormq": logging.WARNING,
    "uvicorn": logging.WARNING,
    "uvicorn.error": logging.WARNING,
    "uvicorn.access": logging.WARNING,
    "sqlalchemy": logging.WARNING,
    "alembic": logging.WARNING,
    "aiosqlite": logging.WARNING,
    "asyncio": logging.WARNING,
}


class _StderrHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """Writes to whatever ``sys.stderr`` is when a record comes, not when configured."""

    @property
    def stream(self) -> Any:
        return sys.stderr

    @stream.setter
    def stream(self, _: Any) -> None:
        pass


class _DropDuplicates(logging.Filter):
    """Drop library lines that repeat what the caller is told anyway.

    aiormq logs every failed connect at ERROR *and* raises it: the caller (the CLI's
    one-line error, aio-pika's reconnect warning) already says it.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        return not (
            record.name.startswith("aiormq") and record.msg == "error when creating transport: %r"
        )


def route_stdlib_logging(renderer: Any, level: str = "info") -> None:
    """Send the standard library's log records through the same processors as ours.

    So that in ``json`` mode every line on stderr is one JSON object, with phone numbers
    masked even inside a library's traceback.
    """
    formatter = structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=[
            structlog.stdlib.add_log_level,
            structlog.stdlib.add_logger_name,
            structlog.processors.format_exc_info,
            redact,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
        ],
        processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta, renderer],
    )
    handler = _StderrHandler()
    handler.setFormatter(formatter)
    handler.addFilter(_DropDuplicates())
    root = logging.getLogger()
    # Replace only our own handler: configuring twice must not stack, nor drop others'.
    root.handlers[:] = [h for h in root.handlers if not isinstance(h, _StderrHandler)]
    root.addHandler(handler)
    root.setLevel(logging.getLevelName(level.upper()))
    for name, least in _LIBRARY_LEVELS.items():
        logger = logging.getLogger(name)
        logger.handlers[:] = []
        logger.propagate = True
        logger.setLevel(max(least, root.level))


def get_logger(name: str) -> Any:
    """A structlog logger named for its module."""
    return structlog.get_logger(name)
