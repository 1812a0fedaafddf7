"""``smsrelay demo``: a worker on embedded defaults, a few sample messages, their fate.

Two simulated providers stand in for real ones: ``sim-primary`` is "down" for one
number so that message fails over to ``sim-backup``. One request is invalid and is
dead-lettered, one number is rejected permanently, one request has already expired.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from datetime import UTC, datetime, timedelta

from smsrelay import logging as smslog
from smsrelay import settings as config
from smsrelay.client import AsyncClient
from smsrelay.runtime import Runtime
from smsrelay.store import MessageRecord

FAILOVER_NUMBER = "+14155550142"
REJECTED_NUMBER = "+14155550199"


def demo_settings() -> config.Settings:
    """Embedded defaults: local RabbitMQ, a SQLite file, two simulators with failover."""
    return config.load(
        database_url="sqlite+aiosqlite:///smsrelay-demo.db",
        providers={
            "sim-primary": {
                "type": "simulator",
                "latency_ms": 120,
                "transient_failure_numbers": [FAILOVER_NUMBER],
                "permanent_failure_numbers": [REJECTED_NUMBER],
            },
            "sim-backup": {"type": "simulator", "latency_ms": 200},
        },
        routes={"*": ["sim-primary", "sim-backup"]},
        retry={"max_attempts": 2, "delays": [1.0]},
        log_format="console",
        log_level="warning",
    )


def _samples(run: str) -> list[dict[str, object]]:
    past = (datetime.now(UTC) - timedelta(minutes=1)).isoformat()
    return [
        {"id": f"{run}-welcome", "to": "+14155550123", "body": "Welcome to smsrelay"},
        {
            "id": f"{run}-otp",
            "to": "07400 123456",
            "region": "GB",
            "body": "Your code is 493021",
            "kind": "otp",
        },
        {"id": f"{run}-failover", "to": FAILOVER_NUMBER, "body": "Primary is down for this one"},
        {"id": f"{run}-rejected", "to": REJECTED_NUMBER, "body": "This number does not exist"},
        {"id": f"{run}-expired", "to": "+33612345678", "body": "Too late", "expires_at": past},
    ]


async def run_demo(settings: config.Settings | None = None) -> int:
    """Run the demo; returns the process exit code."""
    settings = settings or demo_settings()
    smslog.configure(settings.log_format, settings.log_level)
    run = f"demo-{uuid.uuid4().hex[:6]}"
    runtime = await Runtime.build(settings)
    await runtime.start_worker()
    try:
        async with AsyncClient(settings.amqp_url) as client:
            ids = [await client.send(**sample) for sample in _samples(run)]
            await client.publish_raw(b'{"id": "%s-bad", "to": "12"}' % run.encode())
        records = await _wait_for(runtime, ids, seconds=30)
    finally:
        await runtime.close()
    _print(records, run)
    return 0 if all(r is not None and r.state.final for r in records) else 1


async def _wait_for(runtime: Runtime, ids: list[str], seconds: float) -> list[MessageRecord | None]:
    deadline = time.monotonic() + seconds
    while True:
        records = [await runtime.store.get(i) for i in ids]
        if all(r is not None and r.state.final for r in records) or time.monotonic() > deadline:
            return records
        await asyncio.sleep(0.2)


def _print(records: list[MessageRecord | None], run: str) -> None:
    print(f"\n{'message':<22} {'state':<10} {'provider':<12} attempts")
    for record in records:
        if record is None:
            continue
        tries = ", ".join(f"{a.provider}:{a.outcome}" for a in record.attempts) or "-"
        name = record.id.removeprefix(run + "-")
        print(f"{name:<22} {record.state.value:<10} {record.provider or '-':<12} {tries}")
    print(f"{'bad':<22} {'rejected':<10} {'-':<12} dead-lettered: see `smsrelay dlq list`")
