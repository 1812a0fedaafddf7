"""A private RabbitMQ node per test (scripts/rabbitmq-node.sh), for tests that restart it.

The shared broker on 5672 is never restarted: other tests run on it. A test that needs a
broker restart takes the ``private_broker`` fixture, a node of its own on free ports,
and calls ``restart()`` on it; it runs in parallel with everything else.
"""

from __future__ import annotations

import asyncio
import os
import random
import socket
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parent.parent / "scripts" / "rabbitmq-node.sh"


def _free(port: int) -> bool:
    with socket.socket() as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def _free_port_pair() -> int:
    # The node listens on port and, for Erlang distribution, port + 20000.
    for _ in range(200):
        port = random.randrange(21000, 29000)
        if _free(port) and _free(port + 20000):
            return port
    raise RuntimeError("no free port pair for a private RabbitMQ node")


def run_script(script: Path, env: dict[str, str], args: tuple[str, ...], timeout: float) -> str:
    """Run one of the broker scripts; its stdout, or RuntimeError with its stderr's end."""
    done = subprocess.run(
        [str(script), *args], env=env, capture_output=True, text=True, timeout=timeout, check=False
    )
    if done.returncode != 0:
        raise RuntimeError(f"{script.name} {' '.join(args)}: {done.stderr[-2000:]}")
    return done.stdout


class PrivateBroker:
    """One throwaway node: its URL, and the verbs a test needs."""

    def __init__(self, directory: Path, port: int | None = None) -> None:
        self.port = port or _free_port_pair()
        self.env = {
            **os.environ,
            "SMSRELAY_RMQ_PORT": str(self.port),
            "SMSRELAY_RMQ_DIR": str(directory),
        }
        self.url = f"amqp://guest:guest@127.0.0.1:{self.port}/"

    def _run(self, *args: str, timeout: float = 180) -> str:
        return run_script(SCRIPT, self.env, args, timeout)

    def start(self) -> None:
        """Start the node; returns once it accepts connections."""
        self._run("start")

    def stop(self) -> None:
        """Stop the node (by its pid file)."""
        self._run("stop")

    def cleanup(self) -> None:
        """Stop the node and delete its files."""
        self._run("cleanup")

    def ctl(self, *args: str) -> str:
        """rabbitmqctl against this node."""
        return self._run("ctl", *args)

    async def stop_app(self) -> None:
        """``rabbitmqctl stop_app``: every connection drops, the node keeps its data."""
        await asyncio.to_thread(self.ctl, "stop_app")

    async def start_app(self) -> None:
        """``rabbitmqctl start_app``, then wait until it accepts connections again."""
        await asyncio.to_thread(self.ctl, "start_app")
        await asyncio.to_thread(self.ctl, "await_startup")

    async def restart(self, down: float = 1.0) -> None:
        """Stop the app, stay down ``down`` seconds, start it again."""
        await self.stop_app()
        await asyncio.sleep(down)
        await self.start_app()

    async def queue_depths(self) -> dict[str, tuple[int, int]]:
        """Queue name → (ready, unacknowledged) on the default vhost."""
        out = await asyncio.to_thread(
            self.ctl, "list_queues", "--no-table-headers", "name", "messages_ready",
            "messages_unacknowledged",
        )  # fmt: skip
        depths: dict[str, tuple[int, int]] = {}
        for line in out.splitlines():
            parts = line.split()
            if len(parts) == 3 and parts[1].isdigit():
                depths[parts[0]] = (int(parts[1]), int(parts[2]))
        return depths


@pytest.fixture
def private_broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PrivateBroker]:
    """A RabbitMQ node of the test's own, safe to restart; deleted afterwards."""
    broker = PrivateBroker(tmp_path_factory.mktemp("rabbitmq"))
    broker.start()
    try:
        yield broker
    finally:
        broker.cleanup()
