"""Fixtures that give each test its own broker vhost and its own database.

Tests talk to the real RabbitMQ, PostgreSQL and Redis of the machine. Isolation is by
a fresh vhost (created with rabbitmqctl, since the management plugin may be off) and
a fresh SQLite file or PostgreSQL database per test, so tests run in parallel and twice
in a row.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from pathlib import Path
from urllib.parse import unquote, urlsplit

import asyncpg
import pytest

from smsrelay.store import SqlStore, upgrade

# Where the suite finds its services. Not SMSRELAY_*: that prefix is smsrelay's own settings.
AMQP_HOST = os.environ.get("TEST_AMQP_HOST", "127.0.0.1:5672")
PG_DSN = os.environ.get("TEST_PG_DSN", "postgresql://postgres@127.0.0.1:5432")


def _rabbitmqctl(*args: str) -> None:
    subprocess.run(["rabbitmqctl", "-q", *args], check=True, capture_output=True, timeout=60)


@pytest.fixture
def amqp_url() -> Iterator[str]:
    """A fresh vhost with full permissions for guest, deleted afterwards."""
    vhost = f"test-{uuid.uuid4().hex[:12]}"
    _rabbitmqctl("add_vhost", vhost)
    _rabbitmqctl("set_permissions", "-p", vhost, "guest", ".*", ".*", ".*")
    try:
        yield f"amqp://guest:guest@{AMQP_HOST}/{vhost}"
    finally:
        _rabbitmqctl("delete_vhost", vhost)


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    """A SQLite file of the test's own."""
    return f"sqlite+aiosqlite:///{tmp_path}/smsrelay.db"


@asynccontextmanager
async def pg_database() -> AsyncIterator[str]:
    """Create a PostgreSQL database of one's own; drop it on exit."""
    name = f"smsrelay_test_{uuid.uuid4().hex[:12]}"
    admin = await asyncpg.connect(f"{PG_DSN}/test")
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
    finally:
        await admin.close()
    try:
        yield f"postgresql+asyncpg://{PG_DSN.removeprefix('postgresql://')}/{name}"
    finally:
        admin = await asyncpg.connect(f"{PG_DSN}/test")
        try:
            await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        finally:
            await admin.close()


@pytest.fixture
async def pg_url() -> AsyncIterator[str]:
    """A PostgreSQL database of the test's own, dropped afterwards."""
    async with pg_database() as url:
        yield url


@pytest.fixture(params=["sqlite", "postgresql"])
async def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[str]:
    """Each store test runs on SQLite and on PostgreSQL."""
    if request.param == "sqlite":
        yield f"sqlite+aiosqlite:///{tmp_path}/smsrelay.db"
        return
    async with pg_database() as url:
        yield url


@pytest.fixture
async def store(sqlite_url: str) -> AsyncIterator[SqlStore]:
    """A migrated SQLite store of the test's own (modules that need another define their own)."""
    store = SqlStore.from_url(sqlite_url)
    await upgrade(store.engine)
    try:
        yield store
    finally:
        await store.close()


async def eventually(check: object, seconds: float = 20.0, interval: float = 0.05) -> None:
    """Await ``check()`` until it returns truthy or ``seconds`` pass (then assert)."""
    deadline = asyncio.get_running_loop().time() + seconds
    while True:
        result = check()  # type: ignore[operator]
        if asyncio.iscoroutine(result):
            result = await result
        if result:
            return
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"condition not met within {seconds}s")
        await asyncio.sleep(interval)


def queue_depth(amqp_url: str, queue: str) -> tuple[int, int]:
    """``queue``'s (ready, unacknowledged) message counts in the URL's vhost, as the broker sees them."""
    vhost = unquote(urlsplit(amqp_url).path.removeprefix("/")) or "/"
    columns = ["name", "messages_ready", "messages_unacknowledged"]
    listed = subprocess.run(
        ["rabbitmqctl", "-q", "list_queues", "-p", vhost, "--no-table-headers", *columns],
        check=True,
        capture_output=True,
        text=True,
        timeout=60,
    )
    for line in listed.stdout.splitlines():
        name, ready, unacked = line.split("\t")
        if name == queue:
            return int(ready), int(unacked)
    raise AssertionError(f"no queue {queue!r} in vhost {vhost!r}")


async def queue_settled(amqp_url: str, queue: str = "sms.send", seconds: float = 30.0) -> None:
    """Wait until every message published to ``queue`` has been consumed and acked.

    The positive signal that a duplicate was handled: after it, "sent once" means once.
    """

    async def settled() -> bool:
        return await asyncio.to_thread(queue_depth, amqp_url, queue) == (0, 0)

    await eventually(settled, seconds=seconds, interval=0.2)
