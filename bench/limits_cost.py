"""What the shared limits cost the worker per message: limits on ÷ limits off, in one run.

``python -m bench.limits_cost [--runs 3] [--n 20000] [--latency 0]`` drains the same queue
with ``smsrelay-sqlite-priced`` (a price table, no limits) and ``smsrelay-sqlite-limits``
(the same plus a Redis-shared rate limit of 5,000/s and a day cap, neither binding),
alternating the two in every run, and prints each run's worker CPU µs per message for
both and their ratio, then the median ratio. The load average before and after is
printed too: other work on the machine moves every figure.

``--in-process`` measures the same two configurations without the broker: the real
dispatcher (``Runtime.dispatcher``) on a fresh SQLite file, the ``simulator`` provider,
events dropped, N requests handled 500 at a time; CPU is ``time.process_time`` (every
thread of the process, aiosqlite's included). It leaves out what the limits do not touch
(AMQP, HTTP to the provider), so its ratio is the pessimistic one; and it depends far
less on other work on the machine than the drain does.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

from bench.pipelines.smsrelay_worker import PRICES, REDIS_URL, _forget_keys
from bench.run import Bench, Options, scratch
from smsrelay import settings as config
from smsrelay.models import StatusEvent
from smsrelay.runtime import Runtime

OFF, ON = "smsrelay-sqlite-priced", "smsrelay-sqlite-limits"


def ratios(cells: list[dict[str, Any]]) -> list[tuple[int, float, float, float]]:
    """Per run: (run, µs/msg off, µs/msg on, on ÷ off)."""
    out = []
    for run in sorted({c["run"] for c in cells}):
        mine = {c["pipeline"]: c.get("drain", {}) for c in cells if c["run"] == run}
        off, on = mine.get(OFF, {}).get("cpu_us_per_msg"), mine.get(ON, {}).get("cpu_us_per_msg")
        if off and on:
            out.append((run, off, on, on / off))
    return out


class Dropped:
    """Events go nowhere."""

    async def publish(self, event: StatusEvent) -> None:
        return None


def _settings(workdir: Path, limits: bool, prefix: str) -> config.Settings:
    twilio: dict[str, Any] = {"type": "simulator"}
    conf: dict[str, Any] = {
        "database_url": f"sqlite+aiosqlite:///{workdir}/{uuid.uuid4().hex[:8]}.db",
        "providers": {"twilio": twilio},
        "routes": {"*": ["twilio"]},
        "prices": PRICES,
        "log_level": "warning",
    }
    if limits:
        twilio["rate_limit"] = {"per_second": 5000, "burst": 5000}
        conf["redis_url"] = REDIS_URL
        conf["limits"] = {"redis_prefix": prefix}
        conf["spend_caps"] = {"currency": "USD", "providers": {"twilio": {"day": 1_000_000}}}
    return config.load(**conf)


async def _in_process(workdir: Path, n: int, limits: bool) -> float:
    """CPU µs per message of the dispatcher handling ``n`` requests, 500 at a time."""
    prefix = f"bench-{uuid.uuid4().hex[:8]}:"
    runtime = await Runtime.build(_settings(workdir, limits, prefix))
    await runtime.load_prices()
    dispatcher = runtime.dispatcher(Dropped())  # type: ignore[arg-type]
    bodies = [
        json.dumps({"id": f"b-{uuid.uuid4().hex}", "to": "+14155550123", "body": f"bench {i}"})
        for i in range(n + 500)
    ]
    try:
        await asyncio.gather(*(dispatcher.handle(b.encode()) for b in bodies[:500]))  # warm-up
        started = time.process_time()
        for i in range(500, n + 500, 500):
            await asyncio.gather(*(dispatcher.handle(b.encode()) for b in bodies[i : i + 500]))
        return (time.process_time() - started) / n * 1e6
    finally:
        await runtime.close()
        if limits:
            await asyncio.to_thread(_forget_keys, prefix)


def in_process(runs: int, n: int) -> None:
    """Alternate limits off and on, ``runs`` times; print each pair and the median ratio."""
    print(f"load average before: {os.getloadavg()}", flush=True)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for run in range(1, runs + 1):
            off = asyncio.run(_in_process(Path(tmp), n, limits=False))
            on = asyncio.run(_in_process(Path(tmp), n, limits=True))
            rows.append(on / off)
            print(
                f"run {run}: limits off {off:.0f} µs/msg, on {on:.0f} µs/msg, ratio {on / off:.3f}"
            )
    print(f"load average after: {os.getloadavg()}")
    print(f"median ratio on ÷ off: {statistics.median(rows):.3f}")


def main(argv: list[str] | None = None) -> None:
    """Run, print each run's figures and the median ratio."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--n", type=int, default=20_000)
    parser.add_argument("--latency", type=int, default=0)
    parser.add_argument("--in-process", action="store_true", help="the dispatcher, no broker")
    args = parser.parse_args(argv)
    if args.in_process:
        in_process(args.runs, args.n)
        return
    print(f"load average before: {os.getloadavg()}", flush=True)
    options = Options(
        n=args.n,
        runs=args.runs,
        latencies=[args.latency],
        pipelines=[OFF, ON],
        modes=["drain"],
    )
    bench = Bench(options, log=lambda line: print(line, flush=True))
    with scratch(None) as workdir:
        cells = asyncio.run(bench.run(workdir))
    print(f"load average after: {os.getloadavg()}")
    rows = ratios(cells)
    for run, off, on, ratio in rows:
        print(f"run {run}: limits off {off:.0f} µs/msg, on {on:.0f} µs/msg, ratio {ratio:.3f}")
    if rows:
        print(f"median ratio on ÷ off: {statistics.median(r[3] for r in rows):.3f}")


if __name__ == "__main__":
    main()
