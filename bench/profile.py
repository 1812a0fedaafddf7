"""Read py-spy's collapsed stacks (``--format raw``) and say where a worker's time goes.

    python -m bench.profile /tmp/b/smsrelay-sqlite-r1-l0-0.collapsed

Prints the share of samples per thread, then for the event-loop thread the inclusive
share of each cost centre (a sample counts for every centre whose frame is on its
stack), the functions of smsrelay with the most inclusive time, and the leaf frames
with the most self time. ``python -m bench --profile`` writes these files.
"""

from __future__ import annotations

import argparse
import re
from collections import Counter
from pathlib import Path

# name → a pattern one of the stack's frames matches; a sample may fall in several.
CENTRES: list[tuple[str, str]] = [
    (
        "store, all of it (smsrelay.store, SQLAlchemy, aiosqlite)",
        r"\((smsrelay/store/|sqlalchemy/|aiosqlite/)",
    ),
    ("store: every Store call (event-loop side)", r"\(smsrelay/store/"),
    ("store: apply_pending_receipts after each send", r"apply_pending_receipts"),
    ("store: SQLAlchemy statement build + compile", r"\(sqlalchemy/sql/"),
    ("store: SQLAlchemy engine/connection/transaction", r"\(sqlalchemy/(engine|ext|pool)/"),
    ("store: waiting on the SQLite lock", r"SqlStore\._serial"),
    ("provider: TwilioProvider.send (aiohttp client)", r"TwilioProvider\.send"),
    ("aiohttp (client and its connection handling)", r"\(aiohttp/"),
    ("events: AmqpEvents.publish (incl. confirm wait)", r"AmqpEvents\.publish"),
    ("events: StatusEvent build + JSON", r"model_dump_json|StatusEvent"),
    ("ack/nack of deliveries", r"_settle|IncomingMessage\.(ack|nack)"),
    ("aio-pika / aiormq / pamqp (all AMQP)", r"\((aio_pika|aiormq|pamqp)/"),
    ("request: parse + validate (pydantic, phonenumbers)", r"parse_request|phonenumbers/"),
    ("logging: structlog", r"\(structlog/"),
    ("metrics: prometheus_client", r"\(prometheus_client/"),
    ("json module", r"\(json/"),
    (
        "asyncio machinery (loop, tasks, selector)",
        r"\(asyncio/(base_events|events|selector_events|tasks|locks)\.py",
    ),
]


def load(path: Path) -> list[tuple[list[str], int]]:
    samples = []
    for line in path.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if stack and count.isdigit():
            samples.append((stack.split(";"), int(count)))
    return samples


LOOP = "event-loop thread, busy"
IDLE = "event-loop thread, idle in select()"
SQLITE = "aiosqlite thread, busy (runs SQLite)"
SQLITE_IDLE = "aiosqlite thread, idle"


def thread_of(frames: list[str]) -> str:
    """Which thread a stack ran on, and whether it was idle.

    SQLAlchemy's async layer runs its sync code in a greenlet on the event-loop thread;
    py-spy shows such stacks from the greenlet's first frame, so they count as the loop.
    """
    leaf = frames[-1]
    if frames[0].startswith("Thread._bootstrap"):  # the only other thread: aiosqlite's
        return SQLITE_IDLE if "aiosqlite/core.py:59" in leaf else SQLITE
    if "(selectors.py" in leaf and "select" in leaf:
        return IDLE
    return LOOP


def report(path: Path, top: int = 15) -> str:
    samples = load(path)
    total = sum(c for _, c in samples) or 1
    threads = Counter[str]()
    for frames, count in samples:
        threads[thread_of(frames)] += count
    out = [f"{path.name}: {total} samples"]
    out += [f"  {share(n, total)}  {name}" for name, n in threads.most_common()]
    main = [(f, c) for f, c in samples if thread_of(f) == LOOP]
    main_total = sum(c for _, c in main) or 1
    out.append(f"\nevent-loop thread while busy, inclusive ({main_total} samples = 100%):")
    for name, pattern in CENTRES:
        regex = re.compile(pattern)
        n = sum(c for f, c in main if any(regex.search(frame) for frame in f))
        out.append(f"  {share(n, main_total)}  {name}")
    inclusive = Counter[str]()
    for frames, count in main:
        for frame in set(frames):
            if "(smsrelay/" in frame:
                inclusive[frame] += count
    out.append("\nsmsrelay functions, inclusive:")
    out += [f"  {share(n, main_total)}  {f}" for f, n in inclusive.most_common(top)]
    leaves = Counter[str]()
    for frames, count in samples:
        if thread_of(frames) in (LOOP, SQLITE):
            leaves[frames[-1]] += count
    out.append("\nleaf frames (self time, busy threads; % of all samples):")
    out += [f"  {share(n, total)}  {f}" for f, n in leaves.most_common(top)]
    return "\n".join(out)


def share(n: int, total: int) -> str:
    return f"{100 * n / total:5.1f}%"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("files", nargs="+", type=Path)
    parser.add_argument("--top", type=int, default=15)
    args = parser.parse_args()
    for path in args.files:
        print(report(path, args.top), end="\n\n")


if __name__ == "__main__":
    main()
