"""Peak RSS of one smsrelay worker holding 1,200 sends in flight at a slow provider.

```sh
python -m bench.memory                       # SQLite, prefetch 1,200, provider 20 s slow
python -m bench.memory --db postgresql --prefetch 1500
```

The throughput harness (``python -m bench``) reads peak RSS during its 200 ms drain,
but on a busy machine the worker then holds far fewer sends than its prefetch (sends
in flight = rate x latency). Here the fake provider holds every request for
``--latency-ms`` (20 s), so the worker's whole prefetch is in flight at once whatever
the machine's speed: N = prefetch + 200 messages are queued, the worker starts, and
the figure is taken once the fake provider holds ``--prefetch`` requests (its own
count, a positive signal). Peak RSS is the worker's ``VmHWM`` (reset when it is ready),
so it is the peak of holding them.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import tempfile
import time
from pathlib import Path

from bench import pipelines
from bench.broker import Publisher, vhost
from bench.procs import Tree
from bench.run import FakeProvider


async def measure(args: argparse.Namespace) -> None:
    workdir = Path(args.workdir or tempfile.mkdtemp(prefix="bench-memory-"))
    os.makedirs(workdir, exist_ok=True)
    fake = FakeProvider(workdir)
    await fake.start()
    pipeline = pipelines.make(f"smsrelay-{'pg' if args.db == 'postgresql' else 'sqlite'}")
    try:
        await fake.set_latency(args.latency_ms)
        async with vhost("memory") as url:
            ctx = pipelines.Context(amqp_url=url, fake_url=fake.url, workdir=workdir)
            await pipeline.setup(ctx)
            publisher = Publisher(url, pipeline.wire)
            await publisher.connect()
            try:
                await publisher.preload("mem", args.prefetch + 200)
                procs = await asyncio.to_thread(pipeline.start, ctx, args.prefetch, "mem")
                tree = Tree(p.pid for p in procs)
                tree.reset_peak()
                held = await _held(fake, args.prefetch, args.seconds)
                peak = tree.peak_rss_mb()
                for proc in procs:
                    await asyncio.to_thread(proc.stop)
            finally:
                await publisher.close()
                await pipeline.teardown()
    finally:
        await fake.stop()
    load = " ".join(f"{x:.1f}" for x in os.getloadavg())
    verdict = "met" if peak <= 150 and held >= args.prefetch else "NOT met"
    print(f"| {args.db} | {args.prefetch:,} | {held:,} | {peak:.1f} | {verdict} | {load} |")


async def _held(fake: FakeProvider, wanted: int, seconds: float) -> int:
    """Wait until the fake provider holds ``wanted`` requests at once; the most it held."""
    deadline = time.monotonic() + seconds
    most = 0
    while time.monotonic() < deadline:
        most = max(most, int((await fake.totals())["in_flight"]))
        if most >= wanted:
            return most
        await asyncio.sleep(0.1)
    return most


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.memory", description=__doc__)
    parser.add_argument("--db", choices=["sqlite", "postgresql"], default="sqlite")
    parser.add_argument("--prefetch", type=int, default=1200)
    parser.add_argument("--latency-ms", type=float, default=20_000)
    parser.add_argument("--seconds", type=float, default=120, help="wait at most this long")
    parser.add_argument("--workdir")
    args = parser.parse_args()
    print("| store | prefetch | held at once | peak RSS MB | ≤ 150 MB | load |")
    print("|---|--:|--:|--:|---|---|")
    asyncio.run(measure(args))


if __name__ == "__main__":
    main()
