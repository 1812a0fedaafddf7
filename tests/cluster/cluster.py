"""A throwaway 3-node RabbitMQ cluster (scripts/rabbitmq-cluster.sh) for the cluster tests."""

from __future__ import annotations

import asyncio
import os
import random
import uuid
from pathlib import Path

from tests.private_broker import _free, run_script

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "rabbitmq-cluster.sh"
NODES = (1, 2, 3)


def _free_base() -> int:
    # Three AMQP ports in a row and their distribution ports (+20000), all below the
    # ephemeral range (32768 up): a killed node's port must still be free when it comes
    # back, not taken as the local port of some outgoing connection (seen: the revived
    # node failed with dist_port_already_used).
    for _ in range(200):
        base = random.randrange(10000, 12760)
        if all(_free(base + i) and _free(base + i + 20000) for i in range(3)):
            return base
    raise RuntimeError("no free ports for a private RabbitMQ cluster")


class Cluster:
    """Three nodes: their URLs, a vhost per test, and the verbs a failover test needs."""

    def __init__(self, directory: Path) -> None:
        self.base = _free_base()
        self.env = {
            **os.environ,
            "SMSRELAY_RMQ_CLUSTER_PORT": str(self.base),
            "SMSRELAY_RMQ_CLUSTER_DIR": str(directory),
        }
        self.down: set[int] = set()

    def _run(self, *args: str, timeout: float = 400) -> str:
        return run_script(SCRIPT, self.env, args, timeout)

    def port(self, node: int) -> int:
        """Node ``node``'s AMQP port."""
        return self.base + node - 1

    def node_of(self, port: int) -> int:
        """The node listening on ``port``."""
        return port - self.base + 1

    def urls(self, vhost: str = "") -> list[str]:
        """Every node's URL, on ``vhost``."""
        return [f"amqp://guest:guest@127.0.0.1:{self.port(n)}/{vhost}" for n in NODES]

    def start(self) -> None:
        """Start and join the three nodes (about 15 s to 2 min, with the machine's load)."""
        self._run("start")

    def cleanup(self) -> None:
        """Stop every node (by pid file) and delete the cluster's files."""
        self._run("cleanup")

    def ctl(self, *args: str, node: int | None = None) -> str:
        """rabbitmqctl against ``node``, or any running node."""
        target = node or next(n for n in NODES if n not in self.down)
        return self._run("ctl", str(target), *args, timeout=120)

    def add_vhost(self) -> str:
        """A fresh vhost with full permissions for guest."""
        vhost = f"test-{uuid.uuid4().hex[:12]}"
        self.ctl("add_vhost", vhost)
        self.ctl("set_permissions", "-p", vhost, "guest", ".*", ".*", ".*")
        return vhost

    async def kill(self, node: int) -> None:
        """``kill -9`` of node ``node``'s beam process (found by its pid file)."""
        await asyncio.to_thread(self._run, "kill", str(node))
        self.down.add(node)

    async def revive(self, node: int) -> None:
        """Start a killed node again; returns once it accepts connections."""
        await asyncio.to_thread(self._run, "revive", str(node))
        self.down.discard(node)

    async def leader(self, vhost: str, queue: str) -> int:
        """The node leading quorum queue ``queue`` (asked of a running node)."""
        out = await asyncio.to_thread(
            self.ctl, "list_queues", "-p", vhost, "--no-table-headers", "name", "leader"
        )
        for line in out.splitlines():
            parts = line.split()
            if len(parts) == 2 and parts[0] == queue:
                return self.node_of(int(parts[1].split("@")[0].rsplit("-", 1)[1]))
        raise LookupError(f"no leader for {queue} in {out!r}")

    async def depths(self, vhost: str) -> dict[str, tuple[int, int]]:
        """Queue → (ready, unacknowledged). These counts lag: never proof of correctness."""
        out = await asyncio.to_thread(
            self.ctl, "list_queues", "-p", vhost, "--no-table-headers", "name", "messages_ready",
            "messages_unacknowledged",
        )  # fmt: skip
        found: dict[str, tuple[int, int]] = {}
        for line in out.splitlines():
            parts = line.split()
            if len(parts) == 3 and parts[1].isdigit() and parts[2].isdigit():
                found[parts[0]] = (int(parts[1]), int(parts[2]))
        return found
