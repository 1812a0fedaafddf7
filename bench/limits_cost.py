"""What the shared limits cost the worker per message: limits on ÷ limits off, in one run.

``python -m bench.limits_cost [--runs 3] [--n 20000] [--latency 0]`` drains the same queue
with ``smsrelay-sqlite-priced`` (a price table, no limits) and ``smsrelay-sqlite-limits``
(the same plus a Redis-shared rate limit of 5,000/s and a day cap, neither binding),
alternating the two in every run, and prints each run's worker CPU µs per message for
both and their ratio, then the median ratio. The load average before and after is
printed too: other work on the machine moves every figure.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
from typing import Any

from bench.run import Bench, Options, scratch

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


def main(argv: list[str] | None = None) -> None:
    """Run, print each run's figures and the median ratio."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--n", type=int, default=20_000)
    parser.add_argument("--latency", type=int, default=0)
    args = parser.parse_args(argv)
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
