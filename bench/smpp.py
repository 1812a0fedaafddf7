"""SMPP throughput: one real worker, one bind, window 10, against the local SMSC simulator.

``python -m bench.smpp`` preloads N requests into a fresh vhost's ``sms.send``, starts the
simulator (``python -m smsrelay.providers.smsc_sim``, its own process) and one
``smsrelay worker`` whose only provider is ``smpp`` (``binds: 1``, ``window: 10``), and
measures the ``submit_sm`` the simulator accepted per second between its first and its
N-th. Everything the worker does for a message is on: validation, routing, the SQLite
store, status events, logs at info. ``--receipts`` has the simulator send a delivery
receipt for each message, applied by the worker (store + event) while it sends.

Figures are in bench/README.md ("SMPP").
"""

from __future__ import annotations

import argparse
import asyncio
import json
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

import yaml

from bench.broker import Publisher, vhost
from bench.pipelines import PYTHON, env
from bench.procs import Proc, Tree
from smsrelay.providers.smsc_sim import _free_port


def worker_config(port: int, prefetch: int, window: int, binds: int) -> dict[str, Any]:
    """The worker's YAML settings: one SMPP provider at the simulator."""
    return {
        "prefetch": prefetch,
        "grace_period": 10,
        "log_format": "json",
        "log_level": "info",
        "providers": {
            "smpp": {
                "type": "smpp",
                "host": "127.0.0.1",
                "port": port,
                "system_id": "bench",
                "password": "bench",
                "sender": "Bench",
                "binds": binds,
                "window": window,
                "reconnect_initial": 0.5,
                "reconnect_max": 2.0,
            }
        },
        "routes": {"*": ["smpp"]},
    }


def migrate(environment: dict[str, str]) -> None:
    """``smsrelay migrate`` on the run's database."""
    subprocess.run([PYTHON, "-m", "smsrelay", "migrate"], env=environment, check=True)


def read_stats(path: Path) -> dict[str, Any]:
    """The simulator's counters ({} before its first write)."""
    try:
        data: dict[str, Any] = json.loads(path.read_text())
        return data
    except (OSError, ValueError):
        return {}


async def run(args: argparse.Namespace, workdir: Path) -> dict[str, Any]:
    port = _free_port("127.0.0.1")
    stats_file = workdir / "smsc.json"
    smsc = Proc(
        [
            *(PYTHON, "-m", "smsrelay.providers.smsc_sim", "--port", str(port)),
            *("--receipts", str(args.receipts), "--receipt-delay", "0.05"),
            *("--stats", str(stats_file), "--stats-interval", "0.05"),
        ],
        workdir / "smsc.log",
        env(),
    )
    await asyncio.to_thread(smsc.wait_for, "listening")
    try:
        async with vhost("smpp") as url:
            return await _measure(args, workdir, url, port, stats_file)
    finally:
        smsc.stop()


async def _measure(
    args: argparse.Namespace, workdir: Path, url: str, port: int, stats_file: Path
) -> dict[str, Any]:
    config = workdir / "smsrelay.yaml"
    config.write_text(yaml.safe_dump(worker_config(port, args.prefetch, args.window, args.binds)))
    environment = env(
        SMSRELAY_CONFIG=str(config),
        SMSRELAY_AMQP_URL=url,
        SMSRELAY_DATABASE_URL=f"sqlite+aiosqlite:///{workdir / 'bench.db'}",
    )
    await asyncio.to_thread(migrate, environment)
    publisher = Publisher(url, "smsrelay")
    await publisher.connect()
    try:
        await publisher.preload("smpp", args.n)
    finally:
        await publisher.close()
    worker = Proc([PYTHON, "-m", "smsrelay", "worker"], workdir / "worker.log", environment)
    try:
        await asyncio.to_thread(worker.wait_for, "worker_started")
        tree = Tree([worker.pid])
        return await _drain(args, stats_file, tree)
    finally:
        worker.stop()


async def _drain(args: argparse.Namespace, stats_file: Path, tree: Tree) -> dict[str, Any]:
    first: tuple[float, int, float] | None = None
    deadline = time.monotonic() + args.timeout
    while time.monotonic() < deadline:
        await asyncio.sleep(0.02)
        stats = read_stats(stats_file)
        accepted = int(stats.get("accepted", 0))
        now = time.monotonic()
        if first is None and accepted:
            first = (now, accepted, tree.cpu_seconds())
        if accepted >= args.n and first is not None:
            done = now - first[0]
            counted = accepted - first[1]
            cpu = tree.cpu_seconds() - first[2]
            return {
                "n": args.n,
                "window": args.window,
                "binds": args.binds,
                "receipts": args.receipts,
                "submit_sm_per_s": round(counted / done) if done else None,
                "worker_cpu_us_per_msg": round(cpu / counted * 1e6) if counted else None,
                "throttled": stats.get("throttled", 0),
                "accepted": accepted,
            }
    raise RuntimeError(f"the simulator accepted {read_stats(stats_file)} of {args.n} in time")


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.smpp")
    parser.add_argument("--n", type=int, default=20000)
    parser.add_argument("--window", type=int, default=10)
    parser.add_argument("--binds", type=int, default=1)
    parser.add_argument("--prefetch", type=int, default=500)
    parser.add_argument("--receipts", action="store_true")
    parser.add_argument("--timeout", type=float, default=300.0)
    parser.add_argument("--workdir", type=Path, default=None)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-smpp-") as tmp:
        workdir = args.workdir or Path(tmp)
        workdir.mkdir(parents=True, exist_ok=True)
        print(json.dumps(asyncio.run(run(args, workdir))))


if __name__ == "__main__":
    main()
