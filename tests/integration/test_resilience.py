"""Nothing is lost when the worker is stopped, killed, or the broker restarts.

The broker restart runs on a private RabbitMQ node (scripts/rabbitmq-node.sh), never on
the shared one, so this module runs in parallel with everything else.
"""

from __future__ import annotations

import asyncio
import json
import re
import signal
import time
import uuid
from pathlib import Path

import pytest
from sqlalchemy import text

from smsrelay.store import SqlStore
from tests.conftest import eventually
from tests.integration.harness import publish_raw
from tests.integration.process import WorkerProcess
from tests.private_broker import PrivateBroker

COUNT = 600
# Numbers used by these tests: none of them may appear whole in any log line.
NUMBERS = [f"+1415555{n:04d}" for n in range(100, 130)]


def _requests(prefix: str, count: int = COUNT) -> list[tuple[str, bytes]]:
    out = []
    for i in range(count):
        mid = f"{prefix}-{i}"
        body = {"id": mid, "to": NUMBERS[i % len(NUMBERS)], "body": f"code {i}"}
        out.append((mid, json.dumps(body).encode()))
    return out


async def _wait_all_final(
    db: str, ids: list[str], seconds: float = 90
) -> dict[str, tuple[str, bool]]:
    store = SqlStore.from_url(db)
    try:
        deadline = time.monotonic() + seconds
        while True:
            async with store.engine.connect() as conn:
                rows = (
                    await conn.execute(text("SELECT id, state, possible_duplicate FROM messages"))
                ).all()
            found = {r.id: (r.state, bool(r.possible_duplicate)) for r in rows}
            if all(found.get(i, ("accepted",))[0] == "sent" for i in ids):
                return found
            assert time.monotonic() < deadline, f"{sum(1 for i in ids if i in found)} recorded"
            await asyncio.sleep(0.2)
    finally:
        await store.close()


@pytest.fixture
def worker(tmp_path: Path, amqp_url: str, sqlite_url: str) -> WorkerProcess:
    """A worker subprocess on the test's vhost and SQLite file."""
    proc = WorkerProcess(tmp_path, amqp_url, sqlite_url)
    yield proc  # type: ignore[misc]
    proc.stop()


def _assert_no_full_number_logged(worker: WorkerProcess) -> None:
    logs = worker.logs()
    assert logs, "the worker logged nothing"
    for number in NUMBERS:
        assert number not in logs and number[1:] not in logs
    assert not re.search(r"\+\d{10,}", logs)


async def test_sigterm_mid_stream_loses_nothing(
    worker: WorkerProcess, amqp_url: str, sqlite_url: str
) -> None:
    """SIGTERM drains in-flight sends, exits 0, and a new worker finishes the rest: each sent once."""
    reqs = _requests(f"term-{uuid.uuid4().hex[:6]}")
    worker.start()
    await publish_raw(amqp_url, [b for _, b in reqs])
    await eventually(lambda: sum(worker.sends().values()) >= COUNT // 4)
    assert worker.signal(signal.SIGTERM) == 0
    assert sum(worker.sends().values()) < COUNT, "the worker finished before the signal"
    worker.start()
    ids = [m for m, _ in reqs]
    await _wait_all_final(sqlite_url, ids)
    sends = worker.sends()
    assert set(sends) == set(ids)
    assert max(sends.values()) == 1
    assert "worker_stopped" in worker.logs()
    _assert_no_full_number_logged(worker)


async def test_sigkill_mid_stream_loses_nothing(
    worker: WorkerProcess, amqp_url: str, sqlite_url: str
) -> None:
    """After SIGKILL every message is sent by the next worker; any re-send is flagged a possible duplicate."""
    reqs = _requests(f"kill-{uuid.uuid4().hex[:6]}")
    worker.start()
    await publish_raw(amqp_url, [b for _, b in reqs])
    await eventually(lambda: sum(worker.sends().values()) >= COUNT // 4)
    assert worker.signal(signal.SIGKILL) == -signal.SIGKILL
    assert sum(worker.sends().values()) < COUNT, "the worker finished before the kill"
    worker.start()
    ids = [m for m, _ in reqs]
    found = await _wait_all_final(sqlite_url, ids)
    sends = worker.sends()
    assert set(sends) == set(ids)
    twice = {i for i, n in sends.items() if n > 1}
    assert all(found[i][1] for i in twice), "a message was sent twice without being flagged"
    assert max(sends.values()) <= 2
    _assert_no_full_number_logged(worker)


async def test_broker_restart_mid_stream_loses_nothing(
    tmp_path: Path, private_broker: PrivateBroker, sqlite_url: str
) -> None:
    """`rabbitmqctl stop_app`/`start_app` mid-stream: the worker reconnects by itself and sends everything."""
    # Slower sends than the other tests: stopping the app takes a moment of its own.
    worker = WorkerProcess(tmp_path, private_broker.url, sqlite_url, latency_ms=800)
    reqs = _requests(f"restart-{uuid.uuid4().hex[:6]}")
    worker.start()
    try:
        await publish_raw(private_broker.url, [b for _, b in reqs])
        await eventually(lambda: sum(worker.sends().values()) >= COUNT // 4)
        await private_broker.stop_app()
        assert sum(worker.sends().values()) < COUNT, "the worker finished before the restart"
        await asyncio.sleep(2)  # how long the broker stays down, not a wait for a result
        await private_broker.start_app()
        ids = [m for m, _ in reqs]
        found = await _wait_all_final(sqlite_url, ids, seconds=120)
        assert worker.proc is not None and worker.proc.poll() is None, "the worker died"
    finally:
        worker.stop()
    sends = worker.sends()
    assert set(sends) == set(ids)
    twice = {i for i, n in sends.items() if n > 1}
    assert all(found[i][1] for i in twice)
    _assert_no_full_number_logged(worker)
