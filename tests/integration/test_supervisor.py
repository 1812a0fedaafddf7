"""``smsrelay worker --processes N``: one SIGTERM stops every worker, a dead one comes back."""

from __future__ import annotations

import os
import signal
import uuid
from pathlib import Path

import pytest

from tests.conftest import eventually
from tests.integration.harness import publish_raw
from tests.integration.process import WorkerProcess
from tests.integration.test_resilience import COUNT, _requests, _wait_all_final


@pytest.fixture
def workers(tmp_path: Path, amqp_url: str, sqlite_url: str) -> WorkerProcess:
    """A supervisor of two worker processes on the test's vhost and SQLite file."""
    # Slow sends: the stream must outlast the time a loaded machine takes to deliver a signal.
    proc = WorkerProcess(
        tmp_path, amqp_url, sqlite_url, latency_ms=400, args=("--processes", "2")
    )
    yield proc  # type: ignore[misc]
    proc.stop()


def _child_pids(workers: WorkerProcess) -> list[int]:
    return [
        int(line["pid"])
        for line in workers.log_lines()
        if line.get("event") == "worker_process_started"
    ]


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie is dead too: its parent has not reaped it yet.
    with open(f"/proc/{pid}/stat") as stat:
        return stat.read().split(") ", 1)[1][0] != "Z"


async def test_sigterm_to_supervisor_stops_every_worker_and_loses_nothing(
    workers: WorkerProcess, amqp_url: str, sqlite_url: str
) -> None:
    """SIGTERM to the supervisor drains both children, all exit 0; a restart finishes the rest once."""
    reqs = _requests(f"sup-{uuid.uuid4().hex[:6]}")
    workers.start(ready=2)
    pids = _child_pids(workers)
    assert len(pids) == 2
    await publish_raw(amqp_url, [b for _, b in reqs])
    await eventually(lambda: sum(workers.sends().values()) >= COUNT // 4)
    assert workers.signal(signal.SIGTERM) == 0
    assert sum(workers.sends().values()) < COUNT, "the workers finished before the signal"
    assert not any(_alive(pid) for pid in pids)
    assert workers.log_count('"worker_stopped"') == 2
    workers.start(ready=2)
    ids = [m for m, _ in reqs]
    await _wait_all_final(sqlite_url, ids)
    sends = workers.sends()
    assert set(sends) == set(ids)
    assert max(sends.values()) == 1


async def test_killed_worker_process_is_restarted(
    workers: WorkerProcess, amqp_url: str, sqlite_url: str
) -> None:
    """A child killed with SIGKILL is logged and replaced; the messages still all go out."""
    workers.start(ready=2)
    victim = _child_pids(workers)[0]
    os.kill(victim, signal.SIGKILL)
    workers.wait_for_log("worker_process_exited")
    workers.wait_for_log("worker_started", count=3)
    exited = [x for x in workers.log_lines() if x.get("event") == "worker_process_exited"]
    assert exited[0]["pid"] == victim and exited[0]["exit_code"] == -signal.SIGKILL
    assert len(_child_pids(workers)) == 3
    reqs = _requests(f"re-{uuid.uuid4().hex[:6]}", count=100)
    await publish_raw(amqp_url, [b for _, b in reqs])
    await _wait_all_final(sqlite_url, [m for m, _ in reqs])
    assert workers.signal(signal.SIGTERM) == 0
