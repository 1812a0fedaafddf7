"""The scale run: 1, 2, 3 worker processes on one RabbitMQ node and on a 3-node cluster.

``python -m bench.scale`` measures, for each broker target (the machine's node, then a
throwaway 3-node cluster from ``scripts/rabbitmq-cluster.sh``), each worker count and each
provider latency, a burst of N messages published to the running workers (so that
every worker is up before the first message: preloading first let the first worker
drain most of the queue alone) and the half-load steady phase of ``python -m bench``
(``bench/run.py``), PostgreSQL store and events on, and adds what the plain benchmark
does not: the CPU per message of every component (the workers, every broker
node, PostgreSQL's processes) and PostgreSQL's commits per message.

From those it computes what a deployment needs per 1,000 SMS/s (worker cores, broker
cores, PostgreSQL cores and commits/s) and, as a check, the throughput this machine
should reach when its cores are the limit (cores / total CPU per message), against the
best measured drain. Results go to ``bench/results/scale.{json,md}``.

It takes the machine: nothing else may run beside it (the cluster alone is three Erlang
VMs). ``--targets single`` skips the cluster.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime
import json
import os
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import asyncpg

from bench import pipelines
from bench.broker import AMQP_HOST, Publisher, rabbitmqctl
from bench.pipelines import Context, Pipeline
from bench.pipelines.smsrelay_worker import PG_DSN, SmsrelayPipeline
from bench.procs import Proc, Tree, broker_pid
from bench.run import Bench, CpuWindow, FakeProvider, Options, _check_alive, _stop_all, scratch

ROOT = Path(__file__).resolve().parents[1]
CLUSTER = ROOT / "scripts" / "rabbitmq-cluster.sh"
CLUSTER_PORT = int(os.environ.get("SMSRELAY_RMQ_CLUSTER_PORT", "5681"))
CLUSTER_DIR = Path(
    os.environ.get(
        "SMSRELAY_RMQ_CLUSTER_DIR",
        f"{os.environ.get('TMPDIR', '/tmp')}/smsrelay-rabbitmq-cluster-{CLUSTER_PORT}",
    )
)
CORES = os.cpu_count() or 1


class BrokerTarget:
    """Where the broker is: its vhosts, its URLs and its processes."""

    name = "single"

    def urls(self, vhost: str) -> list[str]:
        return [f"amqp://guest:guest@{AMQP_HOST}/{vhost}"]

    def ctl(self, *args: str) -> None:
        rabbitmqctl(*args)

    def tree(self) -> Tree | None:
        pid = broker_pid()
        return Tree([pid]) if pid else None

    def start(self) -> None:
        """Nothing: the machine's node runs already."""

    def stop(self) -> None:
        """Nothing: the machine's node is not ours."""

    @asynccontextmanager
    async def vhost(self, label: str) -> AsyncIterator[str]:
        name = f"scale-{label}-{uuid.uuid4().hex[:8]}"
        await asyncio.to_thread(self.ctl, "add_vhost", name)
        await asyncio.to_thread(self.ctl, "set_permissions", "-p", name, "guest", ".*", ".*", ".*")
        try:
            yield name
        finally:
            await asyncio.to_thread(self.ctl, "delete_vhost", name)


class ClusterTarget(BrokerTarget):
    """The throwaway 3-node cluster of ``scripts/rabbitmq-cluster.sh``."""

    name = "cluster"

    def urls(self, vhost: str) -> list[str]:
        return [f"amqp://guest:guest@127.0.0.1:{CLUSTER_PORT + i}/{vhost}" for i in range(3)]

    def ctl(self, *args: str) -> None:
        subprocess.run(
            [str(CLUSTER), "ctl", "1", "-q", *args], check=True, capture_output=True, timeout=120
        )

    def tree(self) -> Tree | None:
        pids = []
        for n in (1, 2, 3):
            try:
                pids.append(int((CLUSTER_DIR / f"node{n}" / "rabbitmq.pid").read_text().strip()))
            except (OSError, ValueError):
                continue
        return Tree(pids) if pids else None

    def start(self) -> None:
        subprocess.run([str(CLUSTER), "start"], check=True, capture_output=True, timeout=300)

    def stop(self) -> None:
        subprocess.run([str(CLUSTER), "cleanup"], check=False, capture_output=True, timeout=300)


def postgres_tree() -> Tree | None:
    """The postmaster and its backends: PostgreSQL's whole CPU on this machine."""
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            comm = Path(f"/proc/{entry}/comm").read_text().strip()
            stat = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        ppid = int(stat[stat.rindex(")") + 2 :].split()[1])
        parent = Path(f"/proc/{ppid}/comm")
        parent_comm = parent.read_text().strip() if parent.exists() else ""
        if comm in ("postgres", "postmaster") and parent_comm not in ("postgres", "postmaster"):
            return Tree([int(entry)])
    return None


async def pg_xid() -> int:
    """PostgreSQL's transaction id counter (the whole server: the run has it alone)."""
    connection = await asyncpg.connect(f"{PG_DSN}/test")
    try:
        return int(await connection.fetchval("SELECT txid_current()"))
    finally:
        await connection.close()


class ScaleBench(Bench):
    """``Bench`` on a chosen broker target, measuring PostgreSQL and every broker node."""

    def __init__(self, options: Options, target: BrokerTarget, log: Any = print) -> None:
        super().__init__(options, log)
        self.target = target
        self.pipeline: SmsrelayPipeline | None = None

    def broker_tree(self) -> Tree | None:
        return self.target.tree()

    async def _pipeline_run(self, name: str, run: int, fake: FakeProvider, workdir: Path) -> None:
        opts = self.options
        pipeline = pipelines.make(name)
        assert isinstance(pipeline, SmsrelayPipeline)
        self.pipeline = pipeline
        async with self.target.vhost(name) as vhost:
            urls = self.target.urls(vhost)
            # The workers get every node, as a deployment gives them; the harness's
            # publisher talks to the first.
            ctx = Context(amqp_url=",".join(urls), fake_url=fake.url, workdir=workdir)
            await pipeline.setup(ctx)
            publisher = Publisher(urls[0], pipeline.wire, opts.events_queue)
            await publisher.connect()
            try:
                for latency in opts.latencies_for(name):
                    cell = await self._cell(pipeline, ctx, publisher, fake, run, latency)
                    cell["target"] = self.target.name
                    cell["workers"] = pipeline.processes
                    self.cells.append(cell)
                    self.log(f"[{self.target.name} x{pipeline.processes}] {_line(cell)}")
            finally:
                await publisher.close()
                await pipeline.teardown()

    async def _cell(
        self,
        pipeline: Pipeline,
        ctx: Context,
        publisher: Publisher,
        fake: FakeProvider,
        run: int,
        latency: int,
    ) -> dict[str, Any]:
        """Workers first, on an empty queue; then the N messages, published while the
        CPU window is open: with several workers, preloading first let the first worker
        up drain most of the queue before the last one started."""
        prefetch = self.options.prefetch_for(latency)
        tag = f"{pipeline.name}-r{run}-l{latency}"
        self.broker = self.broker_tree()
        cell: dict[str, Any] = {
            "pipeline": pipeline.name,
            "latency_ms": latency,
            "run": run,
            "prefetch": prefetch,
        }
        await fake.set_latency(latency)
        await publisher.purge()
        try:
            procs = await asyncio.to_thread(pipeline.start, ctx, prefetch, tag)
        except Exception as exc:  # a pipeline that cannot start is reported, not fatal
            cell["error"] = str(exc)[:2000]
            return cell
        try:
            cell["drain"] = await self._burst(procs, publisher, fake, tag + "-d", latency)
            if cell["drain"]["msgs_per_s"]:
                rate = cell["drain"]["msgs_per_s"] * 0.5
                cell["steady"] = await self._steady(
                    procs, publisher, fake, tag + "-s", latency, rate
                )
        except Exception as exc:
            cell["error"] = f"{type(exc).__name__}: {exc}"[:2000]
        finally:
            await asyncio.to_thread(_stop_all, procs)
            for suffix in ("-d", "-s"):
                await fake.forget(tag + suffix)
        return cell

    async def _burst(
        self, procs: list[Proc], publisher: Publisher, fake: FakeProvider, phase: str, latency: int
    ) -> dict[str, Any]:
        """N messages published at once to running workers; every figure over all N."""
        database = self.pipeline._pg_name if self.pipeline else None
        n = self.options.n
        tree = Tree(p.pid for p in procs)
        pg = postgres_tree()
        cpu = CpuWindow(tree, self.broker)
        pg_cpu0 = pg.cpu_seconds() if pg else 0.0
        xid0 = await pg_xid() if database else 0
        for seq in range(n):
            await publisher._send(phase, seq)
        deadline = time.monotonic() + 120 + 3 * latency / 1000 * n / 500
        while True:
            stats = await fake.stats(phase)
            if stats["count"] >= n or time.monotonic() > deadline:
                break
            _check_alive(procs)
            await asyncio.sleep(0.1)
        count = stats["count"]
        worker_us, broker_us = cpu.per_message_us(count)
        span = (stats["last_ns"] - stats["first_ns"]) / 1e9
        result: dict[str, Any] = {
            "n": n,
            "delivered": count,
            "seconds": round(span, 3),
            "msgs_per_s": round((count - 1) / span, 1) if span > 0 else None,
            "cpu_us_per_msg": worker_us,
            "broker_cpu_us_per_msg": broker_us,
        }
        if count and pg is not None:
            result["pg_cpu_us_per_msg"] = round((pg.cpu_seconds() - pg_cpu0) / count * 1e6, 1)
        if count and database:
            # Transaction ids go to writing transactions only: the store's commits (less
            # the one this query takes).
            result["pg_commits_per_msg"] = round((await pg_xid() - xid0 - 1) / count, 3)
        return result


def _line(cell: dict[str, Any]) -> str:
    if "error" in cell:
        return f"{cell['latency_ms']} ms: ERROR {cell['error'][:300]}"
    d = cell.get("drain", {})
    s = cell.get("steady", {})
    return (
        f"{cell['latency_ms']:>3} ms: {d.get('msgs_per_s')}/s, worker {d.get('cpu_us_per_msg')} "
        f"broker {d.get('broker_cpu_us_per_msg')} pg {d.get('pg_cpu_us_per_msg')} µs/msg, "
        f"{d.get('pg_commits_per_msg')} commits/msg; steady p50 {s.get('p50_ms')} "
        f"p99 {s.get('p99_ms')} ms"
    )


def pipeline_name(workers: int) -> str:
    """A registry entry for ``workers`` PostgreSQL worker processes, added on demand."""
    name = f"smsrelay-pg-scale-x{workers}"
    pipelines.REGISTRY.setdefault(
        name,
        (
            "bench.pipelines.smsrelay_worker",
            "SmsrelayPipeline",
            {"db": "postgresql", "processes": workers},
        ),
    )
    return name


def derive(cells: list[dict[str, Any]]) -> dict[str, Any]:
    """Per-component CPU per message, what 1,000 SMS/s needs, and the prediction check."""
    rows = []
    for cell in cells:
        d = cell.get("drain")
        if not d or "error" in cell:
            continue
        worker = d.get("cpu_us_per_msg") or 0.0
        broker = d.get("broker_cpu_us_per_msg") or 0.0
        pg = d.get("pg_cpu_us_per_msg") or 0.0
        total = worker + broker + pg
        rows.append(
            {
                "target": cell["target"],
                "workers": cell["workers"],
                "latency_ms": cell["latency_ms"],
                "msgs_per_s": d.get("msgs_per_s"),
                "worker_us": worker,
                "broker_us": broker,
                "pg_us": pg,
                "total_us": round(total, 1),
                "pg_commits_per_msg": d.get("pg_commits_per_msg"),
                # Cores each component needs for 1,000 SMS/s at this CPU per message.
                "per_1000": {
                    "worker_cores": round(worker / 1000, 2),
                    "broker_cores": round(broker / 1000, 2),
                    "pg_cores": round(pg / 1000, 2),
                    "pg_commits_per_s": round((d.get("pg_commits_per_msg") or 0) * 1000),
                },
                # If the machine's cores are the limit, this is the rate they allow.
                "cpu_bound_msgs_per_s": round(CORES * 1e6 / total) if total else None,
                "p50_ms": (cell.get("steady") or {}).get("p50_ms"),
                "p99_ms": (cell.get("steady") or {}).get("p99_ms"),
            }
        )
    return {"cores": CORES, "rows": rows}


def markdown(derived: dict[str, Any], meta: dict[str, Any]) -> str:
    lines = [
        f"Scale run of {meta['date']} (commit {meta['git']}), {meta['cores']} cores, "
        f"N={meta['n']:,}, load average before: {meta['load_before']}.",
        "",
        "| broker | workers | latency | msg/s | worker µs | broker µs | PG µs | total µs "
        "| commits/msg | CPU-bound msg/s | p50 ms | p99 ms |",
        "|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|",
    ]
    for r in derived["rows"]:
        lines.append(
            f"| {r['target']} | {r['workers']} | {r['latency_ms']} | {r['msgs_per_s']} "
            f"| {r['worker_us']} | {r['broker_us']} | {r['pg_us']} | {r['total_us']} "
            f"| {r['pg_commits_per_msg']} "
            f"| {r['cpu_bound_msgs_per_s']} | {r['p50_ms']} | {r['p99_ms']} |"
        )
    lines += [
        "",
        "Per 1,000 SMS/s at each cell's CPU per message:",
        "",
        "| broker | workers | latency | worker cores | broker cores | PG cores | PG commits/s |",
        "|---|--:|--:|--:|--:|--:|--:|",
    ]
    for r in derived["rows"]:
        p = r["per_1000"]
        lines.append(
            f"| {r['target']} | {r['workers']} | {r['latency_ms']} | {p['worker_cores']} "
            f"| {p['broker_cores']} | {p['pg_cores']} | {p['pg_commits_per_s']} |"
        )
    return "\n".join(lines) + "\n"


def parse(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m bench.scale", description=__doc__.splitlines()[0])
    p.add_argument("--targets", default="single,cluster", help="single,cluster")
    p.add_argument("--workers", default="1,2,3", help="worker process counts, e.g. 1,2,3")
    p.add_argument("--latencies", default="0,200", help="provider latencies in ms")
    p.add_argument("--n", type=int, default=10_000, help="messages per drain")
    p.add_argument("--runs", type=int, default=1)
    p.add_argument("--drain-cap", type=float, default=10.0)
    p.add_argument("--keep-cluster", action="store_true", help="leave the cluster running")
    p.add_argument("--workdir", type=Path)
    p.add_argument("--out", type=Path, default=Path(__file__).parent / "results")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse(argv)
    workers = [int(w) for w in args.workers.split(",") if w]
    latencies = [int(x) for x in args.latencies.split(",") if x]
    names = [pipeline_name(w) for w in workers]
    options = Options(
        n=args.n,
        runs=args.runs,
        latencies=latencies,
        pipelines=names,
        only={},
        prefetch={lat: (500 if lat < 100 else 1200) for lat in latencies},
        drain_cap=args.drain_cap,
    )
    targets: list[BrokerTarget] = []
    for name in args.targets.split(","):
        targets.append(ClusterTarget() if name == "cluster" else BrokerTarget())
    load_before = os.getloadavg()
    cells: list[dict[str, Any]] = []
    with scratch(args.workdir) as workdir:
        for target in targets:
            print(f"scale: {target.name}, workers {workers}, latencies {latencies}", flush=True)
            target.start()
            try:
                bench = ScaleBench(options, target, log=lambda line: print(line, flush=True))
                cells += asyncio.run(bench.run(workdir))
            finally:
                if not args.keep_cluster:
                    target.stop()
    meta = {
        "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "git": subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, check=False
        ).stdout.strip(),
        "cores": CORES,
        "n": args.n,
        "load_before": [round(x, 2) for x in load_before],
        "load_after": [round(x, 2) for x in os.getloadavg()],
    }
    derived = derive(cells)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "scale.json").write_text(
        json.dumps({"meta": meta, "cells": cells, "derived": derived}, indent=2)
    )
    text = markdown(derived, meta)
    (args.out / "scale.md").write_text(text)
    print()
    print(text)
    return 1 if any("error" in c for c in cells) else 0


if __name__ == "__main__":
    sys.exit(main())
