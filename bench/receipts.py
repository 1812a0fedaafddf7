"""Receipts per second: ``POST /v1/receipts/twilio`` against a bare signature check.

```sh
python -m bench.receipts                       # 1M messages + 1M receipts, 20 s per target
python -m bench.receipts --messages 100000 --seconds 10 --keep /tmp/r
```

What runs, in one go, on this machine's shared broker and PostgreSQL:

1. A fresh PostgreSQL database, migrated with ``smsrelay migrate``, seeded with COPY:
   ``--messages`` sent messages (Twilio ids ``SM<n>``) and as many receipts (one
   ``sent`` report each, linked), so every lookup runs against tables of that size.
2. ``smsrelay api`` (one process, uvicorn, the real configuration: the ``twilio``
   provider, ``public_url``, events to a fresh vhost with a queue bound to
   ``sms.events``) and the bare endpoint (``bench/receipts_bare.py``: a raw ASGI app
   under the same uvicorn that reads the form and checks ``X-Twilio-Signature``,
   nothing else), each in its own process.
3. A load generator in its own process (aiohttp, ``--connections`` keep-alive
   connections) posting Twilio status callbacks with valid signatures, each for a
   different seeded message (``delivered``): every one is a real state change with
   an event. Each target gets ``--seconds``; the figure is the 204s per second.

The ratio (smsrelay ÷ bare) is the figure to compare across days: both run on the
same machine in the same minute.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import hashlib
import hmac
import json
import os
import subprocess
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import aiohttp
import asyncpg
import yaml

from bench.broker import rabbitmqctl
from bench.pipelines import PYTHON
from bench.procs import Proc, Tree

PG_DSN = os.environ.get("BENCH_PG", "postgresql://postgres@127.0.0.1:5432")
AMQP = os.environ.get("BENCH_AMQP", "amqp://guest:guest@127.0.0.1:5672")
AUTH_TOKEN = "bench-receipts-token"
API_PORT = 18631
BARE_PORT = 18632
PATH = "/v1/receipts/twilio"


def signature(url: str, form: dict[str, str]) -> str:
    """Twilio's X-Twilio-Signature for a POST of ``form`` to ``url``."""
    payload = url + "".join(k + v for k, v in sorted(form.items()))
    digest = hmac.new(AUTH_TOKEN.encode(), payload.encode(), hashlib.sha1).digest()
    return base64.b64encode(digest).decode()


def callback(seq: int, url: str) -> tuple[bytes, dict[str, str]]:
    """One signed status callback reporting seeded message ``seq`` delivered."""
    form = {
        "MessageSid": f"SM{seq:032d}",
        "MessageStatus": "delivered",
        "AccountSid": "AC" + "0" * 32,
        "To": "+14155550100",
    }
    headers = {
        "Content-Type": "application/x-www-form-urlencoded",
        "X-Twilio-Signature": signature(url, form),
    }
    return urlencode(form).encode(), headers


# -- seeding ----------------------------------------------------------------------------


async def seed(url: str, count: int) -> float:
    """COPY ``count`` sent messages and one linked receipt each; seconds taken."""
    started = time.monotonic()
    conn = await asyncpg.connect(url)
    now = datetime.now(UTC)
    try:
        for lo in range(0, count, 100_000):
            hi = min(lo + 100_000, count)
            await conn.copy_records_to_table(
                "messages", records=(_message(i, now) for i in range(lo, hi)), columns=_M_COLUMNS
            )
            await conn.copy_records_to_table(
                "receipts", records=(_receipt(i, now) for i in range(lo, hi)), columns=_R_COLUMNS
            )
        await conn.execute("ANALYZE messages; ANALYZE receipts; ANALYZE attempts")
    finally:
        await conn.close()
    return time.monotonic() - started


_M_COLUMNS = [
    "id", "to", "country", "kind", "body", "tags", "state", "attempts", "provider",
    "provider_message_id", "segments", "possible_duplicate", "resends", "created_at",
    "updated_at", "claimed",
]  # fmt: skip
_R_COLUMNS = ["message_id", "provider", "provider_message_id", "status", "provider_status",
              "received_at"]  # fmt: skip


def _message(i: int, now: datetime) -> tuple[Any, ...]:
    return (f"m{i}", "+14155550100", "US", "transactional", "bench", "{}", "sent", 1,
            "twilio", f"SM{i:032d}", 1, False, 0, now, now, True)  # fmt: skip


def _receipt(i: int, now: datetime) -> tuple[Any, ...]:
    return (f"m{i}", "twilio", f"SM{i:032d}", "pending", "sent", now)


# -- the load ---------------------------------------------------------------------------


async def load(
    base: str, public: str, first: int, seconds: float, connections: int
) -> dict[str, Any]:
    """POST signed callbacks for messages ``first``… for ``seconds``; counts by status."""
    next_seq = first
    codes: dict[int, int] = {}
    done = 0
    deadline = time.monotonic() + seconds
    connector = aiohttp.TCPConnector(limit=connections)
    async with aiohttp.ClientSession(connector=connector) as session:

        async def one_connection() -> None:
            nonlocal next_seq, done
            while time.monotonic() < deadline:
                seq, next_seq = next_seq, next_seq + 1
                body, headers = callback(seq, public + PATH)
                async with session.post(base + PATH, data=body, headers=headers) as resp:
                    await resp.read()
                    codes[resp.status] = codes.get(resp.status, 0) + 1
                done += 1

        started = time.monotonic()
        await asyncio.gather(*(one_connection() for _ in range(connections)))
        elapsed = time.monotonic() - started
    ok = codes.get(204, 0) + codes.get(200, 0)
    return {"rate": ok / elapsed, "codes": codes, "elapsed": elapsed, "next": next_seq}


def _load_main(argv: list[str]) -> None:
    base, public, first, seconds, connections = argv
    result = asyncio.run(load(base, public, int(first), float(seconds), int(connections)))
    print(json.dumps(result))


def run_load(
    base: str, public: str, first: int, seconds: float, connections: int
) -> dict[str, Any]:
    """The load generator in its own process (its CPU must not be the server's)."""
    out = subprocess.run(
        [
            PYTHON,
            "-m",
            "bench.receipts",
            "--load",
            base,
            public,
            str(first),
            str(seconds),
            str(connections),
        ],
        capture_output=True,
        check=True,
        text=True,
    )
    return json.loads(out.stdout.strip().splitlines()[-1])  # type: ignore[no-any-return]


# -- the run ----------------------------------------------------------------------------


def _api_config(public: str) -> dict[str, Any]:
    return {
        "api_host": "127.0.0.1",
        "api_port": API_PORT,
        "public_url": public,
        "log_format": "json",
        "log_level": "warning",
        "providers": {
            "twilio": {
                "account_sid": "AC" + "0" * 32,
                "auth_token": AUTH_TOKEN,
                "sender": "+15005550006",
            }
        },
        "routes": {"*": ["twilio"]},
    }


async def main(args: argparse.Namespace) -> None:
    workdir = Path(args.keep or tempfile.mkdtemp(prefix="bench-receipts-"))
    os.makedirs(workdir, exist_ok=True)
    name = f"bench_receipts_{uuid.uuid4().hex[:8]}"
    vhost = f"bench-receipts-{uuid.uuid4().hex[:8]}"
    admin = await asyncpg.connect(f"{PG_DSN}/test")
    await admin.execute(f'CREATE DATABASE "{name}"')
    await admin.close()
    rabbitmqctl("add_vhost", vhost)
    rabbitmqctl("set_permissions", "-p", vhost, "guest", ".*", ".*", ".*")
    db = f"postgresql+asyncpg://{PG_DSN.removeprefix('postgresql://')}/{name}"
    public = "https://receipts.example.test"
    config = workdir / "api.yaml"
    config.write_text(yaml.safe_dump(_api_config(public)))
    env = {
        **os.environ,
        "SMSRELAY_CONFIG": str(config),
        "SMSRELAY_DATABASE_URL": db,
        "SMSRELAY_AMQP_URL": f"{AMQP}/{vhost}",
    }
    procs: list[Proc] = []
    try:
        migrate = [PYTHON, "-m", "smsrelay", "migrate"]
        await asyncio.to_thread(subprocess.run, migrate, env=env, check=True)
        took = await seed(f"{PG_DSN}/{name}", args.messages)
        print(f"seeded {args.messages:,} messages + {args.messages:,} receipts in {took:.0f} s")
        await _bind_events_queue(f"{AMQP}/{vhost}")
        api = Proc([PYTHON, "-m", "smsrelay", "api"], workdir / "api.log", env)
        procs.append(api)
        bare = Proc(
            [PYTHON, "-m", "bench.receipts_bare", str(BARE_PORT), AUTH_TOKEN, public],
            workdir / "bare.log",
            env,
        )
        procs.append(bare)
        await _listening(API_PORT, api)
        await _listening(BARE_PORT, bare)
        print(f"load: {_uptime()}")
        rows = []
        first = 0
        for label, port, proc in (("bare", BARE_PORT, bare), ("smsrelay", API_PORT, api)):
            # A short warm-up (connections, caches), then the measured window.
            base = f"http://127.0.0.1:{port}"
            warm = run_load(base, public, first, 2, args.connections)
            tree = Tree([proc.pid])
            spy = _profile(proc, workdir / f"{label}.collapsed", args) if args.profile else None
            cpu0 = tree.cpu_seconds()
            result = run_load(base, public, warm["next"], args.seconds, args.connections)
            cpu = tree.cpu_seconds() - cpu0
            if spy is not None:
                spy.wait(timeout=60)
            first = result["next"]
            ok = max(1, sum(v for k, v in result["codes"].items() if int(k) < 300))
            rows.append((label, result["rate"], cpu * 1e6 / ok, result["codes"]))
        print(f"load after: {_uptime()}")
        _report(rows, args)
    finally:
        for proc in procs:
            proc.stop()
        admin = await asyncpg.connect(f"{PG_DSN}/test")
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin.close()
        rabbitmqctl("delete_vhost", vhost)


async def _bind_events_queue(url: str) -> None:
    import aio_pika

    conn = await aio_pika.connect(url)
    async with conn:
        channel = await conn.channel()
        exchange = await channel.declare_exchange("sms.events", "topic", durable=True)
        queue = await channel.declare_queue("bench.receipt-events", durable=True)
        await queue.bind(exchange, "#")


def _profile(proc: Proc, out: Path, args: argparse.Namespace) -> subprocess.Popen[bytes]:
    """py-spy on the server for the measured window (``--profile``)."""
    spy = Path(PYTHON).with_name("py-spy")
    argv = [str(spy), "record", "--nonblocking", "--rate", "200", "--format", "raw"]
    argv += ["--duration", str(int(args.seconds)), "--pid", str(proc.pid), "--output", str(out)]
    return subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


async def _listening(port: int, proc: Proc, seconds: float = 60.0) -> None:
    """Wait until ``port`` accepts connections (the process logs at warning only)."""
    deadline = time.monotonic() + seconds
    while True:
        try:
            _, writer = await asyncio.open_connection("127.0.0.1", port)
        except OSError:
            if proc.popen.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(proc.log.read_text()[-3000:]) from None
            await asyncio.sleep(0.1)
        else:
            writer.close()
            return


def _uptime() -> str:
    return Path("/proc/loadavg").read_text().split(" ", 3)[:3].__str__()


def _report(rows: list[tuple[str, float, float, dict[int, int]]], args: argparse.Namespace) -> None:
    print(f"\n{args.messages:,} messages + {args.messages:,} receipts, "
          f"{args.connections} connections, {args.seconds:.0f} s each")  # fmt: skip
    print("| endpoint | receipts/s | server CPU µs/receipt | answers |")
    print("|---|--:|--:|---|")
    for label, rate, cpu, codes in rows:
        print(f"| {label} | {rate:,.0f} | {cpu:,.0f} | {codes} |")
    bare, smsrelay = rows[0][1], rows[1][1]
    print(f"\nsmsrelay ÷ bare: {smsrelay / bare:.2f} (target ≥ 0.5); "
          f"smsrelay {smsrelay:,.0f}/s (target ≥ 1,000)")  # fmt: skip


def cli(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    if argv and argv[0] == "--load":
        _load_main(argv[1:])
        return
    parser = argparse.ArgumentParser(prog="python -m bench.receipts", description=__doc__)
    parser.add_argument("--messages", type=int, default=1_000_000)
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--connections", type=int, default=256)
    parser.add_argument("--keep", help="work directory to keep (config, logs)")
    parser.add_argument("--profile", action="store_true", help="py-spy each server (--keep)")
    asyncio.run(main(parser.parse_args(argv)))


if __name__ == "__main__":
    cli()
