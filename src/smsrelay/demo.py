"""``smsrelay demo``: a worker on embedded defaults, a few sample messages, their fate.

Two simulated providers stand in for real ones: ``sim-primary`` is "down" for one
number so that message fails over to ``sim-backup``. One request is invalid and is
dead-lettered, one number is rejected permanently, one request has already expired.

Isolation: on the broker's default vhost the demo moves to its own vhost
``smsrelay-demo`` (created with rabbitmqctl when possible), and it refuses to start
while anything else consumes its ``sms.send``: another worker would take half the
messages and, with real credentials, send real SMS.
"""

from __future__ import annotations

import asyncio
import shutil
import subprocess
import time
import uuid
from datetime import UTC, datetime, timedelta

import aio_pika
import aiormq

from smsrelay import logging as smslog
from smsrelay import settings as config
from smsrelay import topology as t
from smsrelay import urls
from smsrelay.client import AsyncClient
from smsrelay.errors import ConfigError
from smsrelay.runtime import Runtime
from smsrelay.store import MessageRecord

DEMO_VHOST = "smsrelay-demo"
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
    settings = settings.model_copy(update={"amqp_url": own_vhost(settings.amqp_url)})
    others = await send_queue_consumers(settings.amqp_url)
    if others:
        raise ConfigError(
            "amqp_url",
            f"{others} consumer(s) already on {t.SEND_QUEUE} in vhost "
            f"'{urls.vhost(settings.amqp_url)}': they would take the demo's messages (and, "
            "with real credentials, send real SMS). Stop them, or point the demo at another "
            "vhost (SMSRELAY_AMQP_URL=amqp://…/other-vhost)",
        )
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
    lines, observed = report(ids, records, f"{run}-bad", settings)
    print("\n".join(lines))
    return 0 if observed else 1


def own_vhost(url: str) -> str:
    """The demo's own vhost when ``url`` names none: its messages then meet no other worker.

    Created with rabbitmqctl when it can be (a local broker); otherwise the demo stays on
    the default vhost, guarded by the check for other consumers.
    """
    if urls.vhost(url) != "/" or shutil.which("rabbitmqctl") is None:
        return url
    for command in (
        ["add_vhost", DEMO_VHOST],
        ["set_permissions", "-p", DEMO_VHOST, urls.user(url), ".*", ".*", ".*"],
    ):
        done = subprocess.run(
            ["rabbitmqctl", "-q", *command], capture_output=True, text=True, timeout=60
        )
        if done.returncode != 0 and "already exists" not in done.stderr + done.stdout:
            return url
    return urls.with_vhost(url, DEMO_VHOST)


async def send_queue_consumers(url: str) -> int:
    """Consumers on ``sms.send`` now (0 when the queue does not exist yet)."""
    async with await aio_pika.connect(url) as connection:
        channel = await connection.channel()
        try:
            queue = await channel.declare_queue(t.SEND_QUEUE, passive=True)
        except aiormq.exceptions.ChannelNotFoundEntity:
            return 0
        return queue.declaration_result.consumer_count or 0


async def _wait_for(runtime: Runtime, ids: list[str], seconds: float) -> list[MessageRecord | None]:
    deadline = time.monotonic() + seconds
    while True:
        records = [await runtime.store.get(i) for i in ids]
        if all(r is not None and r.state.final for r in records) or time.monotonic() > deadline:
            return records
        await asyncio.sleep(0.2)


def report(
    ids: list[str], records: list[MessageRecord | None], bad_id: str, settings: config.Settings
) -> tuple[list[str], bool]:
    """The outcome table with full ids, where to look next, and whether all was observed."""
    lines = ["", f"{'message id':<24} {'state':<10} {'provider':<12} attempts"]
    unobserved: list[str] = []
    for message_id, record in zip(ids, records, strict=True):
        if record is None or not record.state.final:
            unobserved.append(_unobserved(message_id, record))
            state = record.state.value if record else "unseen"
            lines.append(f"{message_id:<24} {state:<10} {'-':<12} -")
            continue
        tries = ", ".join(f"{a.provider}:{a.outcome}" for a in record.attempts) or "-"
        lines.append(
            f"{message_id:<24} {record.state.value:<10} {record.provider or '-':<12} {tries}"
        )
    lines.append(f"{bad_id:<24} {'rejected':<10} {'-':<12} dead-lettered: invalid request")
    lines += ["", *unobserved] if unobserved else []
    lines += _where(ids[0], settings)
    return lines, not unobserved


def _unobserved(message_id: str, record: MessageRecord | None) -> str:
    if record is None:
        return (
            f"not observed: {message_id} has no record after 30 s: the demo's worker never "
            f"received it (another consumer on {t.SEND_QUEUE} may have taken it)"
        )
    return (
        f"not observed: {message_id} is still '{record.state.value}' after 30 s "
        "(a delayed retry or a slow provider); check it later with `smsrelay status`"
    )


def _where(example_id: str, settings: config.Settings) -> list[str]:
    database = urls.sqlite_path(settings.database_url)
    store = str(database.resolve()) if database else urls.mask_url(settings.database_url)
    # guest:guest is the broker's public default: printing it keeps the commands pasteable.
    broker = settings.amqp_url
    if urls.user(broker) != "guest":
        broker = urls.mask_url(broker)
    db_url = f"sqlite+aiosqlite:///{database.resolve()}" if database else store
    return [
        "",
        f"database  {store}",
        f"broker    {urls.mask_url(settings.amqp_url)}",
        "",
        "look closer:",
        f"  SMSRELAY_DATABASE_URL={db_url} smsrelay status {example_id}",
        f"  SMSRELAY_AMQP_URL={broker} smsrelay dlq list",
    ]
