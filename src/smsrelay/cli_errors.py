"""What the command line says when the world is not as configured: one line, what to do.

The single place where failures that escape a command (the broker or database
unreachable, refused, misnamed; a URL with the wrong driver; a database without
tables) become a sentence a person can act on. ``explain`` returns ``None`` for
anything it does not recognise: that is a bug, and its traceback is kept.

Messages name the setting to change and never print a password (``urls.mask_url``).
"""

from __future__ import annotations

import errno
import os
import traceback
from collections.abc import Iterator

import aiormq.exceptions as amqp_errors
from sqlalchemy import exc as sql_errors

from smsrelay import urls
from smsrelay.errors import ConfigError, InvalidRequest, StoreError
from smsrelay.settings import Settings

EXIT_CODE = 2

# PostgreSQL SQLSTATEs we can say something useful about.
_PG_MISSING_DATABASE = "3D000"
_PG_MISSING_TABLE = "42P01"
_PG_AUTH = frozenset({"28P01", "28000"})
_PG_NOT_ACCEPTING = "55000"


def explain(exc: BaseException, settings: Settings | None) -> str | None:
    """A one-line explanation of ``exc`` for a person, or None when it is not ours to explain."""
    if isinstance(exc, ConfigError | InvalidRequest):
        return str(exc)
    if isinstance(exc, StoreError) and exc.__cause__ is not None:
        # The store names only the error class; the driver's error says what to do.
        exc = exc.__cause__
    if isinstance(exc, OSError) and exc.errno == errno.EADDRINUSE:
        return f"{exc.strerror}: another process listens there; change api_port or metrics_port"
    amqp = settings.amqp_url if settings else "amqp://"
    database = settings.database_url if settings else ""
    for explainer in (_broker, _database):
        message = explainer(exc, amqp if explainer is _broker else database)
        if message is not None:
            return message
    return None


def require_existing_sqlite(url: str) -> None:
    """Refuse to open a SQLite file that does not exist (opening it would create it empty)."""
    path = urls.sqlite_path(url)
    if path is not None and not path.exists():
        raise ConfigError(
            "database_url",
            f"{path.resolve()} does not exist: run `smsrelay migrate` to create it, "
            "or point database_url (SMSRELAY_DATABASE_URL) at your database",
        )


def _broker(exc: BaseException, url: str) -> str | None:
    at = f"RabbitMQ at {urls.where(url)}"
    vhost, user = urls.vhost(url), urls.user(url)
    if isinstance(exc, amqp_errors.ProbableAuthenticationError | amqp_errors.AuthenticationError):
        return f"{at} refused user '{user}': check the user and password in amqp_url"
    if isinstance(exc, amqp_errors.ConnectionNotAllowed) or (
        isinstance(exc, amqp_errors.InvalidFrameError) and "Connection.Close" in str(exc)
    ):
        # RabbitMQ answers an unknown vhost and a forbidden one alike: it closes the connection.
        return (
            f"vhost '{vhost}' does not exist or {user} has no access to it on {at}: create it "
            f"(rabbitmqctl add_vhost {vhost}; rabbitmqctl set_permissions -p {vhost} {user}"
            " '.*' '.*' '.*') or fix the vhost in amqp_url"
        )
    if isinstance(exc, amqp_errors.ChannelAccessRefused):
        return f"{user} may not use {vhost} on {at} as smsrelay needs ({exc}): grant permissions"
    if isinstance(exc, amqp_errors.AMQPConnectionError) or (
        isinstance(exc, OSError | TimeoutError) and _raised_in(exc, "aiormq", "aio_pika")
    ):
        return (
            f"cannot reach {at} ({_reason(exc)}): start the broker, "
            f"or set amqp_url (SMSRELAY_AMQP_URL, now {urls.mask_url(url)})"
        )
    return None


def _database(exc: BaseException, url: str) -> str | None:
    if _wrong_driver(exc):
        return (
            f"database_url {urls.mask_url(url)} names a driver smsrelay does not ship: "
            "use postgresql+asyncpg://user:password@host:5432/name (or sqlite+aiosqlite:///file.db)"
        )
    if isinstance(exc, sql_errors.DBAPIError):
        return _sql_error(exc, url)
    if isinstance(exc, OSError | TimeoutError) and _raised_in(exc, "asyncpg", "sqlalchemy"):
        return (
            f"cannot reach PostgreSQL at {urls.where(url)} ({_reason(exc)}): start it, "
            f"or set database_url (SMSRELAY_DATABASE_URL, now {urls.mask_url(url)})"
        )
    return None


def _sql_error(exc: sql_errors.DBAPIError, url: str) -> str | None:
    state = getattr(exc.orig, "sqlstate", None)
    text = str(exc.orig)
    name, at = urls.database_name(url), urls.where(url)
    if state == _PG_MISSING_DATABASE:
        return (
            f"PostgreSQL database '{name}' does not exist on {at}: create it "
            f"(createdb {name}), then run `smsrelay migrate`"
        )
    if state == _PG_MISSING_TABLE or "no such table" in text:
        return f"the database {urls.mask_url(url)} has no smsrelay tables: run `smsrelay migrate`"
    if state in _PG_AUTH:
        return f"PostgreSQL at {at} refused the login: check user and password in database_url"
    if state == _PG_NOT_ACCEPTING:
        return f"PostgreSQL database '{name}' on {at} is not accepting connections: {text}"
    if "unable to open database file" in text:
        return f"cannot open the SQLite file of {url}: does its directory exist and is it writable?"
    return None


def _wrong_driver(exc: BaseException) -> bool:
    if isinstance(exc, sql_errors.NoSuchModuleError):
        return True
    return isinstance(exc, ModuleNotFoundError) and (exc.name or "").split(".")[0] in {
        "psycopg",
        "psycopg2",
        "pymysql",
        "MySQLdb",
        "pysqlite2",
    }


def _raised_in(exc: BaseException, *packages: str) -> bool:
    """Whether ``exc`` (or what it was raised from) passed through one of ``packages``."""
    for error in _chain(exc):
        for frame in traceback.extract_tb(error.__traceback__):
            if any(f"/{package}/" in frame.filename for package in packages):
                return True
    return False


def _chain(exc: BaseException) -> Iterator[BaseException]:
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        yield current
        current = current.__cause__ or current.__context__


def _reason(exc: BaseException) -> str:
    for error in _chain(exc):
        # asyncio words a refused connection "Connect call failed (…)": the errno says it better.
        if isinstance(error, OSError) and error.errno and error.errno > 0:
            return os.strerror(error.errno)
        if isinstance(error, OSError) and error.strerror:
            return error.strerror
    if isinstance(exc, TimeoutError):
        return "timed out"
    return str(exc) or type(exc).__name__
