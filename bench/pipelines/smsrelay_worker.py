"""smsrelay: the real worker (``python -m smsrelay worker``) with its real configuration.

Validation, routing, the store (a fresh SQLite file or PostgreSQL database per run,
migrated once with ``smsrelay migrate`` before the workers start) and status events
are all on; logs are JSON at level info, written to a file as a supervisor would.
The only provider is ``twilio`` with ``base_url`` at the fake. Settings come from a
generated YAML file (``SMSRELAY_CONFIG``) plus ``SMSRELAY_*`` variables for the broker
and the database, as a deployment would pass secrets.

With ``tracing`` (``smsrelay-sqlite-traced``), the standard OpenTelemetry variables
turn tracing on as a deployment would: every message sampled (``always_on``), spans
batched to an OTLP/HTTP receiver on loopback (``bench/otlp_sink.py``, its own process,
which counts and drops them).
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import uuid
from pathlib import Path
from typing import Any

import asyncpg
import yaml

from bench.fake_provider import ACCOUNT_SID, AUTH_TOKEN, SENDER
from bench.pipelines import PYTHON, Context, Pipeline, env
from bench.procs import Proc

PG_DSN = os.environ.get("BENCH_PG", "postgresql://postgres@127.0.0.1:5432")


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
        path.write_text(yaml.safe_dump(config(ctx, prefetch)))
        tracing = (
            {
                "OTEL_TRACES_EXPORTER": "otlp",
                "OTEL_EXPORTER_OTLP_PROTOCOL": "http/protobuf",
                "OTEL_EXPORTER_OTLP_ENDPOINT": self._sink_url,
                "OTEL_TRACES_SAMPLER": "always_on",
                "OTEL_SERVICE_NAME": "smsrelay-bench",
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
        traced = ", traced (always_on, OTLP/HTTP)" if self.tracing else ""
        return f"smsrelay worker, {self.db} store, events on, logs at info, {workers}{traced}"


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
