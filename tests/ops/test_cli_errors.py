"""A misconfigured command says what is wrong and what to do in one or two lines, exit 2.

Each test runs the real command line against the machine's real RabbitMQ and
PostgreSQL with one setting wrong.
"""

from __future__ import annotations

import socket
import subprocess
from pathlib import Path

import asyncpg
import pytest

from tests.conftest import AMQP_HOST, PG_DSN
from tests.integration.test_cli import smsrelay


def closed_port() -> int:
    """A loopback port nothing listens on."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
def env(amqp_url: str, sqlite_url: str) -> dict[str, str]:
    """Settings that work: the test's vhost and SQLite file, JSON logs."""
    return {
        "SMSRELAY_AMQP_URL": amqp_url,
        "SMSRELAY_DATABASE_URL": sqlite_url,
        "SMSRELAY_LOG_FORMAT": "json",
    }


def refused(done: subprocess.CompletedProcess[str], *expected: str) -> str:
    """Assert exit 2 with one or two lines (besides JSON log lines) holding ``expected``.

    A long-running command logs its start-up line first (JSON here): that is a log, not
    the message for the person, which is the last line. Returns that line.
    """
    lines = [line for line in done.stderr.strip().splitlines() if not line.startswith("{")]
    assert done.returncode == 2, done.stderr
    assert 1 <= len(lines) <= 2, done.stderr
    assert "Traceback" not in done.stderr
    error = lines[-1]
    assert error.startswith("error: ")
    for text in expected:
        assert text in error, error
    return error


def test_status_without_a_database_says_run_migrate_and_creates_nothing(
    env: dict[str, str], tmp_path: Path
) -> None:
    """`status` against a SQLite file that does not exist says to run migrate, and leaves no file."""
    env["SMSRELAY_DATABASE_URL"] = "sqlite+aiosqlite:///smsrelay.db"
    done = smsrelay("status", "abc", env=env, cwd=tmp_path)
    refused(done, "does not exist", "run `smsrelay migrate`", str(tmp_path / "smsrelay.db"))
    assert not (tmp_path / "smsrelay.db").exists()


def test_status_against_an_empty_sqlite_file_says_run_migrate(
    env: dict[str, str], tmp_path: Path
) -> None:
    """`status` against a SQLite file without tables says to run migrate."""
    (tmp_path / "smsrelay.db").touch()
    refused(smsrelay("status", "abc", env=env, cwd=tmp_path), "run `smsrelay migrate`")


def test_status_against_an_empty_postgresql_database_says_run_migrate(
    env: dict[str, str], pg_url: str, tmp_path: Path
) -> None:
    """`status` against a PostgreSQL database without tables says to run migrate."""
    env["SMSRELAY_DATABASE_URL"] = pg_url
    refused(smsrelay("status", "abc", env=env, cwd=tmp_path), "no smsrelay tables", "migrate")


@pytest.mark.parametrize(
    "command", [["worker"], ["dlq", "list"], ["send", "--to", "+14155550123", "--body", "hi"]]
)
def test_broker_down_says_where_it_looked(
    command: list[str], env: dict[str, str], tmp_path: Path
) -> None:
    """With nothing listening at amqp_url, the command names the address and the setting."""
    port = closed_port()
    env["SMSRELAY_AMQP_URL"] = f"amqp://guest:secret@127.0.0.1:{port}/"
    error = refused(
        smsrelay(*command, env=env, cwd=tmp_path),
        f"cannot reach RabbitMQ at 127.0.0.1:{port} (Connection refused)",
        "SMSRELAY_AMQP_URL",
    )
    assert "secret" not in error


def test_wrong_vhost_says_vhost(env: dict[str, str], tmp_path: Path) -> None:
    """An unknown vhost is named as such, with the user and how to create it."""
    env["SMSRELAY_AMQP_URL"] = f"amqp://guest:guest@{AMQP_HOST}/no-such-vhost"
    refused(
        smsrelay("dlq", "list", env=env, cwd=tmp_path),
        "vhost 'no-such-vhost' does not exist or guest has no access",
        "rabbitmqctl add_vhost no-such-vhost",
    )


def test_wrong_password_says_login_refused(env: dict[str, str], tmp_path: Path) -> None:
    """A wrong broker password is named as a refused login, without printing the password."""
    env["SMSRELAY_AMQP_URL"] = f"amqp://guest:wrong-pw@{AMQP_HOST}/"
    error = refused(
        smsrelay("worker", env=env, cwd=tmp_path), "refused user 'guest'", "user and password"
    )
    assert "wrong-pw" not in error


def test_database_down_says_where_it_looked(env: dict[str, str], tmp_path: Path) -> None:
    """With nothing listening at database_url, the worker names the address and the setting."""
    port = closed_port()
    env["SMSRELAY_DATABASE_URL"] = f"postgresql+asyncpg://postgres:pw@127.0.0.1:{port}/x"
    refused(
        smsrelay("worker", env=env, cwd=tmp_path),
        f"cannot reach PostgreSQL at 127.0.0.1:{port} (Connection refused)",
        "SMSRELAY_DATABASE_URL",
    )


async def test_database_refusing_connections_is_named(
    env: dict[str, str], pg_url: str, tmp_path: Path
) -> None:
    """A PostgreSQL database that is up but refuses connections is named, with the reason."""
    name = pg_url.rsplit("/", 1)[1]
    admin = await asyncpg.connect(f"{PG_DSN}/test")
    try:
        await admin.execute(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS false')
        env["SMSRELAY_DATABASE_URL"] = pg_url
        done = smsrelay("migrate", env=env, cwd=tmp_path)
    finally:
        await admin.execute(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS true')
        await admin.close()
    refused(done, f"'{name}'", "not accepting connections")


def test_missing_database_says_create_it(env: dict[str, str], tmp_path: Path) -> None:
    """A PostgreSQL database that does not exist is named, with createdb and migrate."""
    env["SMSRELAY_DATABASE_URL"] = (
        f"postgresql+asyncpg://{PG_DSN.removeprefix('postgresql://')}/smsrelay_nope"
    )
    refused(
        smsrelay("migrate", env=env, cwd=tmp_path),
        "database 'smsrelay_nope' does not exist",
        "createdb smsrelay_nope",
    )


def test_postgresql_url_without_asyncpg_says_which_to_use(
    env: dict[str, str], tmp_path: Path
) -> None:
    """`postgresql://` (no driver) is answered with the URL form smsrelay needs."""
    env["SMSRELAY_DATABASE_URL"] = f"{PG_DSN}/test"
    refused(smsrelay("migrate", env=env, cwd=tmp_path), "use postgresql+asyncpg://")
