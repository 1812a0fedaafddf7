"""smsrelay: the real worker (``python -m smsrelay worker``) with its real configuration.

Validation, routing, the store (a fresh SQLite file or PostgreSQL database per run,
migrated once with ``smsrelay migrate`` before the workers start) and status events
are all on; logs are JSON at level info, written to a file as a supervisor would.
The only provider is ``twilio`` with ``base_url`` at the fake. Settings come from a
generated YAML file (``SMSRELAY_CONFIG``) plus ``SMSRELAY_*`` variables for the broker
and the database, as a deployment would pass secrets.

With ``tracing`` (``smsrelay-sqlite-traced``), the standard OpenTelemetry variables
turn tracing on as a deployment would: every message sampled (``always_on``), or with
``ratio`` (``-traced-10pct``, ``-traced-1pct``) that share of the traces
(``parentbased_traceidratio``; the bench's messages carry no trace context, so the
worker decides); spans batched to an OTLP/HTTP receiver on loopback
(``bench/otlp_sink.py``, its own process, which counts and drops them).

With ``limits`` (``smsrelay-sqlite-limits``), the shared limits are on as a deployment
would run them, set high enough never to bind: ``redis_url`` at the machine's Redis (a
key prefix per run), a Twilio ``rate_limit`` of 5,000/s (leased in batches of 400 for
the 4,000/s left to non-OTP kinds) and a 1,000,000 USD day cap on Twilio. Its twin
``smsrelay-sqlite-priced`` has the same price table without limits: the two differ by
the limits only (``python -m bench.limits_cost`` runs both and compares).
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import uuid
from pathlib import Path
from typing import Any

import asyncpg
import redis
import yaml

from bench.fake_provider import ACCOUNT_SID, AUTH_TOKEN, SENDER
from bench.pipelines import PYTHON, Context, Pipeline, env
from bench.procs import Proc

PG_DSN = os.environ.get("BENCH_PG", "postgresql://postgres@127.0.0.1:5432")


REDIS_URL = os.environ.get("BENCH_REDIS", "redis://127.0.0.1:6379/0")
PRICES = {"providers": {"twilio": {"currency": "USD", "destinations": {"US": "0.0079"}}}}


def config(ctx: Context, prefetch: int) -> dict[str, Any]:
    """The worker's YAML settings."""
    return {
        "prefetch": prefetch,
        "grace_period": 5,
        "log_format": "json",
        "log_level": "info",
        "providers": {
            "twilio": {
                "account_sid": ACCOUNT_SID,
                "auth_token": AUTH_TOKEN,
                "sender": SENDER,
                "base_url": ctx.fake_url,
                # The connection pool must not be what caps sends in flight below prefetch.
                "max_connections": max(prefetch, 1000),
            }
        },
        "routes": {"*": ["twilio"]},
    }


class SmsrelayPipeline(Pipeline):
    """One or more ``smsrelay worker`` processes sharing a vhost and a database."""

    wire = "smsrelay"

    def __init__(
        self,
        name: str,
        db: str,
        processes: int = 1,
        tracing: bool = False,
        prices: bool = False,
        limits: bool = False,
        ratio: float | None = None,
        supervised: int = 1,
        seed_receipts: int = 0,
        **_options: Any,
    ) -> None:
        self.name = name
        self.db = db
        self.processes = processes
        # >1: one `smsrelay worker --processes N` (a supervisor and N children).
        self.supervised = supervised
        self.seed_receipts = seed_receipts
        self.tracing = tracing
        self.prices = prices or limits
        self.limits = limits
        self.redis_prefix = f"bench-{uuid.uuid4().hex[:8]}:"
        self.ratio = ratio
        self.database_url = ""
        self._pg_name: str | None = None
        self._sink: Proc | None = None
        self._sink_url = ""

    async def setup(self, ctx: Context) -> None:
        if self.tracing:
            await asyncio.to_thread(self._start_sink, ctx)
        if self.db == "sqlite":
            path = ctx.workdir / f"{self.name}-{uuid.uuid4().hex[:8]}.db"
            self.database_url = f"sqlite+aiosqlite:///{path}"
        else:
            self._pg_name = f"smsrelay_bench_{uuid.uuid4().hex[:12]}"
            await _admin(f'CREATE DATABASE "{self._pg_name}"')
            self.database_url = f"postgresql+asyncpg://{_strip(PG_DSN)}/{self._pg_name}"
        await asyncio.to_thread(self._migrate, ctx)
        if self.seed_receipts and self._pg_name is not None:
            from bench.receipts import seed

            await seed(f"{PG_DSN}/{self._pg_name}", self.seed_receipts)

    def _environment(self, ctx: Context, prefetch: int) -> dict[str, str]:
        path = ctx.workdir / f"{self.name}-p{prefetch}.yaml"
        path.write_text(yaml.safe_dump(self._config(ctx, prefetch)))
        tracing = (
            {
                "OTEL_TRACES_EXPORTER": "otlp",
                "OTEL_EXPORTER_OTLP_PROTOCOL": "http/protobuf",
                "OTEL_EXPORTER_OTLP_ENDPOINT": self._sink_url,
                "OTEL_SERVICE_NAME": "smsrelay-bench",
                **self._sampler(),
            }
            if self.tracing
            else {}
        )
        return env(
            SMSRELAY_CONFIG=str(path),
            SMSRELAY_AMQP_URL=ctx.amqp_url,
            SMSRELAY_DATABASE_URL=self.database_url,
            **tracing,
        )

    def _config(self, ctx: Context, prefetch: int) -> dict[str, Any]:
        conf = config(ctx, prefetch)
        if self.prices:
            conf["prices"] = PRICES
        if self.limits:
            conf["providers"]["twilio"]["rate_limit"] = {"per_second": 5000, "burst": 5000}
            conf["redis_url"] = REDIS_URL
            conf["limits"] = {"redis_prefix": self.redis_prefix}
            conf["spend_caps"] = {"currency": "USD", "providers": {"twilio": {"day": 1_000_000}}}
        return conf

    def _sampler(self) -> dict[str, str]:
        if self.ratio is None:
            return {"OTEL_TRACES_SAMPLER": "always_on"}
        return {
            "OTEL_TRACES_SAMPLER": "parentbased_traceidratio",
            "OTEL_TRACES_SAMPLER_ARG": str(self.ratio),
        }

    def _start_sink(self, ctx: Context) -> None:
        self._sink = Proc(
            [PYTHON, "-m", "bench.otlp_sink"], ctx.workdir / f"{self.name}-otlp.log", env()
        )
        self._sink.wait_for("listening on ")
        self._sink_url = self._sink.log.read_text().split("listening on ", 1)[1].split()[0]

    def _migrate(self, ctx: Context) -> None:
        subprocess.run(
            [PYTHON, "-m", "smsrelay", "migrate"],
            env=self._environment(ctx, 1),
            check=True,
            capture_output=True,
            timeout=120,
        )

    def start(self, ctx: Context, prefetch: int, tag: str) -> list[Proc]:
        environment = self._environment(ctx, prefetch)
        argv = [PYTHON, "-m", "smsrelay", "worker", "--processes", str(self.supervised)]
        procs = [
            Proc(argv, ctx.workdir / f"{tag}-{i}.log", environment) for i in range(self.processes)
        ]
        for proc in procs:
            proc.wait_for("worker_started", count=self.supervised)
        return procs

    async def teardown(self) -> None:
        if self.limits:
            await asyncio.to_thread(_forget_keys, self.redis_prefix)
        if self._sink is not None:
            await asyncio.to_thread(self._sink.stop)
            self._sink = None
        if self._pg_name is not None:
            await _admin(f'DROP DATABASE IF EXISTS "{self._pg_name}" WITH (FORCE)')
            self._pg_name = None
        elif self.database_url:
            await asyncio.to_thread(_remove_sqlite, self.database_url)

    def describe(self) -> str:
        workers = f"{self.processes} worker processes" if self.processes > 1 else "1 worker"
        if self.supervised > 1:
            n = self.supervised
            workers = f"`worker --processes {n}` (a supervisor, {n} workers)"
        if self.seed_receipts:
            workers += f", {self.seed_receipts:,} messages and receipts already stored"
        sampled = "always_on" if self.ratio is None else f"{self.ratio:.0%} of traces"
        traced = f", traced ({sampled}, OTLP/HTTP)" if self.tracing else ""
        priced = ", priced" if self.prices else ""
        limited = ", Redis rate limit 5,000/s and day cap (not binding)" if self.limits else ""
        return (
            f"smsrelay worker, {self.db} store, events on, logs at info, {workers}"
            f"{traced}{priced}{limited}"
        )


def _forget_keys(prefix: str) -> None:
    """Delete the run's keys from the shared Redis."""
    client = redis.Redis.from_url(REDIS_URL)
    try:
        keys = list(client.scan_iter(match=f"{prefix}*", count=1000))
        if keys:
            client.delete(*keys)
    finally:
        client.close()


def _remove_sqlite(url: str) -> None:
    path = url.removeprefix("sqlite+aiosqlite:///")
    for suffix in ("", "-wal", "-shm"):
        Path(path + suffix).unlink(missing_ok=True)


def _strip(dsn: str) -> str:
    return dsn.removeprefix("postgresql://")


async def _admin(statement: str) -> None:
    connection = await asyncpg.connect(f"{PG_DSN}/test")
    try:
        await connection.execute(statement)
    finally:
        await connection.close()
