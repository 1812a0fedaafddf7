"""``python -m bench``: run the pipelines, print the table and the targets' verdicts.

    python -m bench                          # everything, as `make bench` (≈ 13 min)
    python -m bench --smoke                  # seconds: tiny N, one run, 0 ms
    python -m bench --pipelines limit,smsrelay-sqlite --latencies 0,200 --runs 1
    python -m bench --pipelines smsrelay-sqlite --runs 1 --profile --workdir /tmp/b

Results go to ``bench/results/results.{json,md}`` (``--out`` to change).
"""

from __future__ import annotations

import argparse
import asyncio
import datetime
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

from bench import pipelines, report
from bench.run import Bench, Options, scratch

SMOKE = {
    "n": 300,
    "runs": 1,
    "latencies": [0],
    "drain_cap": 5.0,
    "steady_seconds": 1.0,
    "steady_max_seconds": 2.0,
    "pipelines": ["limit", "smsrelay-sqlite"],
}


def _ints(text: str) -> list[int]:
    return [int(x) for x in text.split(",") if x]


def _prefetch(text: str) -> dict[int, int]:
    """``0:500,200:1200`` → {0: 500, 200: 1200}; a bare number applies to every latency."""
    if ":" not in text:
        return {-1: int(text)}
    return {int(k): int(v) for k, v in (pair.split(":") for pair in text.split(","))}


def parse(argv: list[str] | None = None) -> tuple[Options, Path]:
    defaults = Options()
    p = argparse.ArgumentParser(prog="python -m bench", description=__doc__.splitlines()[0])
    p.add_argument("--smoke", action="store_true", help="tiny N, one run: checks the harness")
    p.add_argument("--n", type=int, help=f"messages per drain (default {defaults.n})")
    p.add_argument("--runs", type=int, help=f"runs per figure (default {defaults.runs})")
    p.add_argument("--latencies", type=_ints, help="provider latencies in ms, e.g. 0,50,200")
    p.add_argument(
        "--pipelines", type=lambda s: s.split(","), help=f"of {', '.join(pipelines.REGISTRY)}"
    )
    p.add_argument("--modes", type=lambda s: s.split(","), help="drain,steady")
    p.add_argument(
        "--all-latencies",
        action="store_true",
        help="run smsrelay-pg and smsrelay-sqlite-x2 at every latency too",
    )
    p.add_argument("--prefetch", type=_prefetch, help="e.g. 500 or 0:500,50:500,200:1200")
    p.add_argument("--drain-cap", type=float, help="seconds a drain may take at most")
    p.add_argument("--steady-seconds", type=float, help="seconds of paced load")
    p.add_argument("--celery-concurrency", type=int, help="threads/greenlets of the peer pools")
    p.add_argument("--celery-loglevel", help="the peer worker's log level (Celery's WARNING)")
    p.add_argument(
        "--no-events-queue",
        action="store_true",
        help="do not bind a queue to sms.events (events are then dropped)",
    )
    p.add_argument("--profile", action="store_true", help="py-spy each worker during drains")
    p.add_argument("--workdir", type=Path, help="keep logs, configs and profiles here")
    p.add_argument("--out", type=Path, default=Path(__file__).parent / "results")
    args = p.parse_args(argv)
    chosen = dict(SMOKE) if args.smoke else {}
    for key in (
        "n",
        "runs",
        "latencies",
        "pipelines",
        "modes",
        "prefetch",
        "drain_cap",
        "steady_seconds",
        "celery_concurrency",
        "celery_loglevel",
        "profile",
        "workdir",
    ):
        value = getattr(args, key)
        if value is not None and value is not False:
            chosen[key] = value
    if -1 in chosen.get("prefetch", {}):
        chosen["prefetch"] = {
            lat: chosen["prefetch"][-1] for lat in chosen.get("latencies", defaults.latencies)
        }
    if args.all_latencies:
        chosen["only"] = {}
    if args.no_events_queue:
        chosen["events_queue"] = False
    unknown = set(chosen.get("pipelines", [])) - set(pipelines.REGISTRY)
    if unknown:
        p.error(f"unknown pipelines: {', '.join(sorted(unknown))}")
    return Options(**chosen), args.out


def _rabbitmq_version() -> str:
    try:
        done = subprocess.run(
            ["rabbitmqctl", "version"], capture_output=True, text=True, timeout=30
        )
        return done.stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def _git() -> str:
    """The commit measured, and whether src/ had uncommitted changes then."""
    try:
        head = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, timeout=10
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "src"], capture_output=True, text=True, timeout=10
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return head + (" + uncommitted changes in src/" if dirty else "")


def main(argv: list[str] | None = None) -> int:
    options, out = parse(argv)
    started = time.monotonic()
    measured = _git()  # before: others may commit to src/ while the benchmark runs
    print(
        f"bench: {', '.join(options.pipelines)} at {options.latencies} ms, N={options.n:,}, "
        f"{options.runs} run(s)",
        flush=True,
    )
    bench = Bench(options, log=lambda line: print(line, flush=True))
    with scratch(options.workdir) as workdir:
        cells = asyncio.run(bench.run(workdir))
    meta = {
        "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "n": options.n,
        "runs": options.runs,
        "latencies": options.latencies,
        "pipelines": options.pipelines,
        "described": bench.described,
        "modes": options.modes,
        "prefetch": {str(k): v for k, v in options.prefetch.items()},
        "drain_cap": options.drain_cap,
        "celery_concurrency": options.celery_concurrency,
        "events_queue": options.events_queue,
        "cores": os.cpu_count(),
        "python": platform.python_version(),
        "rabbitmq": _rabbitmq_version(),
        "git": measured,
        "seconds": round(time.monotonic() - started, 1),
    }
    result = report.build(cells, meta)
    json_path, md_path = report.write(result, out)
    print()
    print(report.markdown(result))
    print(f"{meta['seconds']:.0f} s; written {json_path} and {md_path}")
    return 1 if any("error" in c for c in cells) else 0


if __name__ == "__main__":
    sys.exit(main())
