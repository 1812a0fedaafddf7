"""SMPP soak (not in CI): the SMSC drops the bind for 30 s every 2 minutes during 10 minutes.

``python -m bench.smpp_soak`` runs the simulator with ``--drop-every 120 --drop-for 30``
(binds dropped and refused meanwhile; 5% of receipts sent twice, 5% late), one
``smsrelay worker`` routing ``*`` to ``smpp`` then ``backup`` (the ``simulator``
provider), and publishes ``--rate`` messages per second for ``--minutes``. While the
bind is down, sends fail over to ``backup``; ``retry_unknown_outcome`` lets a message
whose ``submit_sm`` was out when the bind dropped be tried again (flagged
``possible_duplicate``).

At the end (once every message is final, or nothing moved for 2 minutes, then a quiet
period for late receipts) it reads the store and the status events kept in a queue, and
reports (``settled_after_s``: how long the worker needed after the last publish):

- lost: published ids with no record, or not ``sent``/``delivered``/``undelivered``;
- receipts applied twice: ids with more than one ``delivered``/``undelivered`` event;
- how many went over SMPP and over the backup, and the simulator's counters.

``--minutes 3 --drop-every 40 --drop-for 10`` is a shortened run.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sqlite3
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

import aio_pika
import yaml

from bench.broker import Publisher, vhost
from bench.pipelines import PYTHON, env
from bench.procs import Proc
from bench.smpp import migrate, read_stats, worker_config
from smsrelay.amqp import declare_events_exchange
from smsrelay.providers.smsc_sim import _free_port

EVENTS = "soak.events"


async def soak(args: argparse.Namespace, workdir: Path) -> dict[str, Any]:
    port = _free_port("127.0.0.1")
    stats_file = workdir / "smsc.json"
    smsc = Proc(
        [
            *(PYTHON, "-m", "smsrelay.providers.smsc_sim", "--port", str(port)),
            *("--receipt-delay", "1.0", "--delivery-rate", "0.95"),
            *("--duplicate-receipt-share", "0.05", "--late-receipt-share", "0.05"),
            *("--late-receipt-delay", "20", "--seed", "1"),
            *("--drop-every", str(args.drop_every), "--drop-for", str(args.drop_for)),
            *("--stats", str(stats_file)),
        ],
        workdir / "smsc.log",
        env(),
    )
    await asyncio.to_thread(smsc.wait_for, "listening")
    try:
        async with vhost("soak") as url:
            return await _run(args, workdir, url, port, stats_file)
    finally:
        smsc.stop()


async def _run(
    args: argparse.Namespace, workdir: Path, url: str, port: int, stats_file: Path
) -> dict[str, Any]:
    settings = worker_config(port, prefetch=200, window=10, binds=1)
    settings["providers"]["smpp"].update(retry_unknown_outcome=True, timeout=5)
    settings["providers"]["backup"] = {"type": "simulator", "latency_ms": 5}
    settings["routes"] = {"*": ["smpp", "backup"]}
    settings["retry"] = {"max_attempts": 8, "delays": [5, 10, 20, 40], "jitter": 0.1}
    config = workdir / "smsrelay.yaml"
    config.write_text(yaml.safe_dump(settings))
    db = workdir / "soak.db"
    environment = env(
        SMSRELAY_CONFIG=str(config),
        SMSRELAY_AMQP_URL=url,
        SMSRELAY_DATABASE_URL=f"sqlite+aiosqlite:///{db}",
    )
    await asyncio.to_thread(migrate, environment)
    await _keep_events(url)
    worker = Proc([PYTHON, "-m", "smsrelay", "worker"], workdir / "worker.log", environment)
    try:
        await asyncio.to_thread(worker.wait_for, "worker_started")
        publisher = Publisher(url, "smsrelay")
        await publisher.connect()
        try:
            sent = await publisher.steady("soak", args.rate, args.minutes * 60)
        finally:
            await publisher.close()
        # A worker behind the publishing rate is still working, not losing: wait until
        # every message has a final state (or nothing moved for a while), then give
        # late receipts their time.
        settled = await _settle(db, sent, stall=120.0)
        await asyncio.sleep(args.quiet)
    finally:
        worker.stop()
    verdict = await _verdict(url, db, sent, read_stats(stats_file))
    verdict["settled_after_s"] = settled
    return verdict


FINAL = ("sent", "delivered", "undelivered")


async def _settle(db: Path, sent: int, stall: float) -> float | None:
    """Seconds until all ``sent`` messages are final; None if progress stalled first."""
    started = last_change = time.monotonic()
    done = -1
    while True:
        count = await asyncio.to_thread(_final_count, db)
        if count >= sent:
            return round(time.monotonic() - started, 1)
        if count != done:
            done, last_change = count, time.monotonic()
        elif time.monotonic() - last_change > stall:
            return None
        await asyncio.sleep(2.0)


def _final_count(db: Path) -> int:
    with sqlite3.connect(db, timeout=30) as conn:
        marks = ",".join("?" * len(FINAL))
        (count,) = conn.execute(
            f"SELECT count(*) FROM messages WHERE state IN ({marks})", FINAL
        ).fetchone()
    return int(count)


async def _keep_events(url: str) -> None:
    connection = await aio_pika.connect(url)
    async with connection:
        channel = await connection.channel()
        exchange = await declare_events_exchange(channel)
        queue = await channel.declare_queue(EVENTS, durable=True)
        await queue.bind(exchange, routing_key="#")


async def _drain_events(url: str) -> list[dict[str, Any]]:
    events = []
    connection = await aio_pika.connect(url)
    async with connection:
        channel = await connection.channel()
        queue = await channel.declare_queue(EVENTS, durable=True)
        while (message := await queue.get(no_ack=True, fail=False)) is not None:
            events.append(json.loads(message.body))
    return events


async def _verdict(url: str, db: Path, sent: int, smsc: dict[str, Any]) -> dict[str, Any]:
    events = await _drain_events(url)
    with sqlite3.connect(db) as conn:
        rows = dict(conn.execute("SELECT id, state FROM messages").fetchall())
        by_provider = Counter(
            p for (p,) in conn.execute("SELECT provider FROM messages").fetchall()
        )
    ids = {f"soak-{seq}" for seq in range(sent)}
    lost = sorted(i for i in ids if rows.get(i) not in FINAL)
    receipt_events = Counter(e["id"] for e in events if e["state"] in {"delivered", "undelivered"})
    twice = sorted(i for i, n in receipt_events.items() if n > 1)
    return {
        "published": sent,
        "lost": len(lost),
        "lost_examples": lost[:10],
        "states": dict(Counter(rows.values())),
        "receipts_applied_twice": len(twice),
        "by_provider": dict(by_provider),
        "smsc": smsc,
    }


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.smpp_soak")
    parser.add_argument("--minutes", type=float, default=10.0)
    parser.add_argument("--rate", type=float, default=100.0)
    parser.add_argument("--drop-every", type=float, default=120.0)
    parser.add_argument("--drop-for", type=float, default=30.0)
    parser.add_argument("--quiet", type=float, default=60.0, help="s after the last publish")
    parser.add_argument("--workdir", type=Path, default=None)
    args = parser.parse_args()
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="bench-soak-") as tmp:
        workdir = args.workdir or Path(tmp)
        workdir.mkdir(parents=True, exist_ok=True)
        result = asyncio.run(soak(args, workdir))
    result["seconds"] = round(time.monotonic() - started)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
