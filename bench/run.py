"""The measurement loop: for each run, each pipeline, each latency, drain then steady.

Runs are the outer loop, so that the machine's noise (other work on two cores) spreads
over every pipeline rather than hitting one. Each pipeline run has its own vhost and
database; each latency starts the pipeline's workers afresh on a preloaded queue.

Drain: N messages are published (confirmed) before the workers start; the rate is
what the fake provider counted between its first and last receipt. A pipeline too slow
to drain N within ``drain_cap`` seconds is measured over that window, and the rest is
purged. Steady: the same workers then get 50% of the drain rate just measured, paced,
and the fake provider times each message from publish to receipt.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp

from bench import pipelines
from bench.broker import Publisher, vhost
from bench.pipelines import Context, Pipeline
from bench.procs import Proc, Tree, broker_pid


@dataclass
class Options:
    """What to measure; the defaults are ``make bench``."""

    n: int = 20_000
    latencies: list[int] = field(default_factory=lambda: [0, 50, 200])
    runs: int = 3
    pipelines: list[str] = field(
        default_factory=lambda: [
            "limit",
            "smsrelay-sqlite",
            "smsrelay-pg",
            "smsrelay-sqlite-x2",
            "celery-prefork",
            "celery-threads",
        ]
    )
    # Secondary pipelines run at fewer latencies so that `make bench` fits in 15 minutes.
    only: dict[str, list[int]] = field(
        default_factory=lambda: {
            "smsrelay-pg": [0, 200],
            "smsrelay-sqlite-x2": [0, 200],
            "smsrelay-sqlite-p2": [0, 200],
            "smsrelay-pg-p2": [0],
            "smsrelay-pg-1m": [0],
        }
    )
    modes: list[str] = field(default_factory=lambda: ["drain", "steady"])
    prefetch: dict[int, int] = field(default_factory=lambda: {0: 500, 50: 500, 200: 1200})
    drain_cap: float = 8.0
    steady_seconds: float = 3.0
    steady_max_seconds: float = 6.0
    celery_concurrency: int = 200
    celery_loglevel: str = "WARNING"
    events_queue: bool = True
    profile: bool = False
    workdir: Path | None = None

    def prefetch_for(self, latency: int) -> int:
        return self.prefetch.get(latency, 500)

    def latencies_for(self, pipeline: str) -> list[int]:
        chosen = self.only.get(pipeline)
        return [lat for lat in self.latencies if chosen is None or lat in chosen]


class FakeProvider:
    """The fake Twilio process and its control endpoints."""

    def __init__(self, workdir: Path) -> None:
        argv = [sys.executable, "-m", "bench.fake_provider"]
        self.proc = Proc(argv, workdir / "fake.log", pipelines.env())
        self.url = ""
        self._session: aiohttp.ClientSession | None = None

    async def start(self) -> None:
        await asyncio.to_thread(self.proc.wait_for, "listening on ")
        line = self.proc.log.read_text().split("listening on ", 1)[1].split()[0]
        self.url = line.strip()
        self._session = aiohttp.ClientSession()

    async def stop(self) -> None:
        if self._session is not None:
            await self._session.close()
        await asyncio.to_thread(self.proc.stop)

    async def _call(self, method: str, path: str, **kwargs: Any) -> dict[str, Any]:
        assert self._session is not None
        async with self._session.request(method, self.url + path, **kwargs) as response:
            response.raise_for_status()
            result: dict[str, Any] = await response.json()
            return result

    async def set_latency(self, ms: float) -> None:
        await self._call("POST", "/_bench/latency", json={"ms": ms})

    async def stats(self, phase: str) -> dict[str, Any]:
        return await self._call("GET", "/_bench/stats", params={"phase": phase})

    async def totals(self) -> dict[str, Any]:
        return await self._call("GET", "/_bench/total")

    async def forget(self, phase: str) -> None:
        await self._call("POST", "/_bench/forget", params={"phase": phase})

    async def quiesce(self, latency_ms: float, limit: float = 60.0) -> None:
        """Wait until no request arrives for a while and none is held."""
        quiet = max(0.5, 3 * latency_ms / 1000)
        deadline = time.monotonic() + limit
        last = await self.totals()
        since = time.monotonic()
        while time.monotonic() < deadline:
            await asyncio.sleep(0.1)
            now = await self.totals()
            if now["total"] != last["total"] or now["in_flight"]:
                last, since = now, time.monotonic()
            elif time.monotonic() - since >= quiet:
                return


class CpuWindow:
    """CPU seconds of the workers and of the broker over one window."""

    def __init__(self, tree: Tree, broker: Tree | None) -> None:
        self.tree, self.broker = tree, broker
        self.worker0 = tree.cpu_seconds()
        self.broker0 = broker.cpu_seconds() if broker else 0.0

    def per_message_us(self, count: int) -> tuple[float | None, float | None]:
        if count <= 0:
            return None, None
        worker = (self.tree.cpu_seconds() - self.worker0) / count * 1e6
        broker = (self.broker.cpu_seconds() - self.broker0) / count * 1e6 if self.broker else None
        return round(worker, 1), round(broker, 1) if broker is not None else None


class Bench:
    """One benchmark session: the fake provider, then every measurement."""

    def __init__(self, options: Options, log: Any = print) -> None:
        self.options = options
        self.log = log
        self.cells: list[dict[str, Any]] = []
        self.broker: Tree | None = None
        self.described: dict[str, str] = {}

    def broker_tree(self) -> Tree | None:
        """The broker's processes, looked up each time: a test elsewhere may restart it."""
        broker = broker_pid()
        return Tree([broker]) if broker else None

    async def run(self, workdir: Path) -> list[dict[str, Any]]:
        fake = FakeProvider(workdir)
        await fake.start()
        try:
            for run in range(1, self.options.runs + 1):
                for name in self.options.pipelines:
                    await self._pipeline_run(name, run, fake, workdir)
        finally:
            await fake.stop()
        return self.cells

    async def _pipeline_run(self, name: str, run: int, fake: FakeProvider, workdir: Path) -> None:
        opts = self.options
        pipeline = pipelines.make(
            name, celery_concurrency=opts.celery_concurrency, celery_loglevel=opts.celery_loglevel
        )
        async with vhost(name) as url:
            ctx = Context(amqp_url=url, fake_url=fake.url, workdir=workdir)
            await pipeline.setup(ctx)
            publisher = Publisher(url, pipeline.wire, opts.events_queue)
            await publisher.connect()
            try:
                for latency in opts.latencies_for(name):
                    self.described[name] = pipeline.describe()
                    cell = await self._cell(pipeline, ctx, publisher, fake, run, latency)
                    self.cells.append(cell)
                    self.log(_one_line(cell))
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
        preload_rate = await publisher.preload(tag + "-d", self.options.n)
        try:
            procs = await asyncio.to_thread(pipeline.start, ctx, prefetch, tag)
        except Exception as exc:  # a pipeline that cannot start is reported, not fatal
            cell["error"] = str(exc)[:2000]
            return cell
        try:
            async with self._profiled(procs, tag, ctx.workdir):
                cell["drain"] = await self._drain(procs, publisher, fake, tag + "-d", latency)
            cell["drain"]["preload_per_s"] = round(preload_rate)
            if "steady" in self.options.modes and cell["drain"]["msgs_per_s"]:
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

    async def _drain(
        self, procs: list[Proc], publisher: Publisher, fake: FakeProvider, phase: str, latency: int
    ) -> dict[str, Any]:
        tree = Tree(p.pid for p in procs)
        tree.reset_peak()
        # What the workers sent before the window opened (while the harness, starved on a
        # busy machine, was still seeing them start) is not counted against its CPU.
        before = (await fake.stats(phase))["count"]
        cpu = CpuWindow(tree, self.broker)
        n, cap = self.options.n, self.options.drain_cap
        capped = stalled = False
        progress, progress_at = 0, time.monotonic()
        while True:
            await asyncio.sleep(0.1)
            stats = await fake.stats(phase)
            now = time.monotonic()
            if stats["count"] >= n:
                break
            if stats["count"] > progress:
                progress, progress_at = stats["count"], now
            if stats["count"] and time.time_ns() - stats["first_ns"] > cap * 1e9:
                capped = True
                break
            if now - progress_at > 20 + latency / 1000 * 3:
                stalled = True
                break
            _check_alive(procs)
        worker_us, broker_us = cpu.per_message_us(stats["count"] - before)
        rss = tree.peak_rss_mb()
        stats = await fake.stats(phase)
        if capped or stalled:
            await publisher.purge()
            await fake.quiesce(latency)
        span = (stats["last_ns"] - stats["first_ns"]) / 1e9
        rate = (stats["count"] - 1) / span if span > 0 else None
        return {
            "n": n,
            "delivered": stats["count"],
            "capped": capped,
            "stalled": stalled,
            "seconds": round(span, 3),
            "msgs_per_s": round(rate, 1) if rate else None,
            "cpu_us_per_msg": worker_us,
            "broker_cpu_us_per_msg": broker_us,
            "peak_rss_mb": round(rss, 1),
            "max_in_flight": stats["max_in_flight"],
            "mean_in_flight": stats["mean_in_flight"],
            "duplicates": stats["duplicates"],
        }

    async def _steady(
        self,
        procs: list[Proc],
        publisher: Publisher,
        fake: FakeProvider,
        phase: str,
        latency: int,
        rate: float,
    ) -> dict[str, Any]:
        opts = self.options
        # Enough messages for a p99 where the rate allows, within the time budget.
        seconds = min(max(opts.steady_seconds, 100 / rate), opts.steady_max_seconds)
        cpu = CpuWindow(Tree(p.pid for p in procs), self.broker)
        published = await publisher.steady(phase, rate, seconds)
        deadline = time.monotonic() + 10 + 3 * latency / 1000
        while time.monotonic() < deadline:
            stats = await fake.stats(phase)
            if stats["count"] >= published:
                break
            _check_alive(procs)
            await asyncio.sleep(0.1)
        worker_us, broker_us = cpu.per_message_us(stats["count"])
        return {
            "offered_per_s": round(rate, 1),
            "seconds": round(seconds, 2),
            "published": published,
            "delivered": stats["count"],
            "p50_ms": stats["p50_ms"],
            "p99_ms": stats["p99_ms"],
            "max_ms": stats["max_ms"],
            "cpu_us_per_msg": worker_us,
            "broker_cpu_us_per_msg": broker_us,
        }

    @contextlib.asynccontextmanager
    async def _profiled(self, procs: list[Proc], tag: str, workdir: Path) -> AsyncIterator[None]:
        """With ``profile``: py-spy records each worker during the drain (collapsed stacks)."""
        if not self.options.profile:
            yield
            return
        spies = [
            subprocess.Popen(  # noqa: ASYNC220 - starting py-spy does not wait for it
                [
                    *(str(Path(sys.executable).parent / "py-spy"), "record", "--nonblocking"),
                    *("--pid", str(p.pid), "--rate", "200", "--format", "raw"),
                    *("-o", str(workdir / f"{tag}-{i}.collapsed")),
                ],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
            for i, p in enumerate(procs)
        ]
        try:
            yield
        finally:
            for spy in spies:
                spy.send_signal(signal.SIGINT)
            for spy in spies:
                await asyncio.to_thread(spy.wait, 30)
            self.log(f"  profiles: {workdir}/{tag}-*.collapsed")


def _check_alive(procs: list[Proc]) -> None:
    for proc in procs:
        if proc.popen.poll() is not None:
            tail = proc.log.read_text(errors="replace")[-2000:]
            raise RuntimeError(f"{proc.log.name} exited {proc.popen.returncode}: {tail}")


def _stop_all(procs: list[Proc]) -> None:
    for proc in procs:
        if proc.popen.poll() is None:
            proc.popen.send_signal(signal.SIGTERM)
    for proc in procs:
        proc.stop()


def _one_line(cell: dict[str, Any]) -> str:
    head = f"  run {cell['run']} {cell['pipeline']:<20} {cell['latency_ms']:>3} ms"
    if "error" in cell:
        return f"{head}: ERROR {cell['error'][:300]}"
    d = cell.get("drain", {})
    s = cell.get("steady", {})
    capped = " capped" if d.get("capped") else ""
    drain = f"drain {d.get('msgs_per_s')}/s ({d.get('delivered')}{capped})"
    steady = f"steady p50 {s.get('p50_ms')} p99 {s.get('p99_ms')} ms" if s else ""
    return f"{head}: {drain}, {d.get('cpu_us_per_msg')} µs/msg, {d.get('peak_rss_mb')} MB, {steady}"


@contextlib.contextmanager
def scratch(workdir: Path | None) -> Any:
    if workdir is not None:
        workdir.mkdir(parents=True, exist_ok=True)
        yield workdir
        return
    with tempfile.TemporaryDirectory(prefix="smsrelay-bench-") as tmp:
        yield Path(tmp)


def median_min_max(values: list[float]) -> dict[str, float] | None:
    present = [v for v in values if v is not None]
    if not present:
        return None
    return {"median": statistics.median(present), "min": min(present), "max": max(present)}
