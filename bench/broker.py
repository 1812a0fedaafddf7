"""RabbitMQ side of the harness: a fresh vhost per pipeline run, and the publisher.

Every pipeline gets the same message set, in its own wire format: the smsrelay v1
request for the bare consumer and for smsrelay (exchange ``sms``, quorum queue
``sms.send``, as smsrelay declares it), a Celery task message (protocol 2) for the
peer (exchange and classic queue ``celery``, as Celery declares them by default). The
text of each message is ``bench <phase> <seq> <t_publish_ns>`` so the fake provider
can count it and time it.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import time
import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from typing import Any

import aio_pika
import aiormq
import aiormq.abc
from aio_pika.abc import AbstractChannel, AbstractExchange, AbstractRobustConnection
from pamqp.commands import Basic

from bench.fake_provider import bench_body
from smsrelay.amqp import declare_events_exchange, declare_send_topology
from smsrelay.topology import EXCHANGE, SEND_QUEUE, SEND_ROUTING_KEY

AMQP_HOST = os.environ.get("BENCH_AMQP_HOST", "127.0.0.1:5672")
CELERY_QUEUE = "celery"
EVENTS_QUEUE = "bench.events"


def rabbitmqctl(*args: str) -> None:
    subprocess.run(["rabbitmqctl", "-q", *args], check=True, capture_output=True, timeout=60)


@asynccontextmanager
async def vhost(label: str) -> AsyncIterator[str]:
    """A fresh vhost for guest, deleted (with everything left in it) afterwards."""
    name = f"bench-{label}-{uuid.uuid4().hex[:8]}"
    await asyncio.to_thread(rabbitmqctl, "add_vhost", name)
    await asyncio.to_thread(rabbitmqctl, "set_permissions", "-p", name, "guest", ".*", ".*", ".*")
    try:
        yield f"amqp://guest:guest@{AMQP_HOST}/{name}"
    finally:
        await asyncio.to_thread(rabbitmqctl, "delete_vhost", name)


def recipient(seq: int) -> str:
    """One of a hundred valid US numbers, so that not every message goes to one."""
    return f"+1415555{100 + seq % 100:04d}"


Wire = tuple[bytes, dict[str, Any]]  # body and AMQP properties (aio-pika and pamqp names)


def smsrelay_message(phase: str, seq: int, now_ns: int) -> Wire:
    """A v1 request, as ``smsrelay.client`` publishes it."""
    body = {"id": f"{phase}-{seq}", "to": recipient(seq), "body": bench_body(phase, seq, now_ns)}
    properties = {
        "content_type": "application/json",
        "delivery_mode": 2,
        "message_id": body["id"],
        # The publish time, as the client sets it (smsrelay.publish_time.stamp).
        "headers": {"timestamp_in_ms": now_ns // 1_000_000},
        "timestamp": datetime.fromtimestamp(now_ns / 1e9, UTC),
    }
    return json.dumps(body).encode(), properties


def celery_message(phase: str, seq: int, now_ns: int) -> Wire:
    """``send_sms.delay(to, text)`` as Celery's protocol 2 puts it on the wire."""
    task_id = str(uuid.uuid4())
    args = [recipient(seq), bench_body(phase, seq, now_ns)]
    headers = {
        "lang": "py",
        "task": "bench.send_sms",
        "id": task_id,
        "shadow": None,
        "eta": None,
        "expires": None,
        "group": None,
        "group_index": None,
        "retries": 0,
        "timelimit": [None, None],
        "root_id": task_id,
        "parent_id": None,
        "argsrepr": repr(tuple(args)),
        "kwargsrepr": "{}",
        "origin": "bench",
        "ignore_result": True,
    }
    embed = {"callbacks": None, "errbacks": None, "chain": None, "chord": None}
    properties = {
        "headers": headers,
        "content_type": "application/json",
        "content_encoding": "utf-8",
        "delivery_mode": 2,
        "correlation_id": task_id,
        "priority": 0,
    }
    return json.dumps([args, {}, embed]).encode(), properties


async def declare_smsrelay(channel: AbstractChannel, events_queue: bool) -> AbstractExchange:
    exchange = await declare_send_topology(channel)
    if events_queue:
        # Someone listens to status events in production: make the broker route and keep them.
        events = await declare_events_exchange(channel)
        queue = await channel.declare_queue(EVENTS_QUEUE, durable=True)
        await queue.bind(events, routing_key="#")
    return exchange


async def declare_celery(channel: AbstractChannel) -> AbstractExchange:
    exchange = await channel.declare_exchange(
        CELERY_QUEUE, aio_pika.ExchangeType.DIRECT, durable=True
    )
    queue = await channel.declare_queue(CELERY_QUEUE, durable=True)
    await queue.bind(exchange, routing_key=CELERY_QUEUE)
    return exchange


MessageMaker = Callable[[str, int, int], Wire]


class Publisher:
    """Publishes a pipeline's messages: preloaded before the workers start, or paced.

    Messages go straight through aiormq on a channel without publisher confirms: on two
    cores the producer's own CPU competes with the pipeline under test, and this path
    costs about 80 µs a message instead of about 190 µs through aio-pika with confirms.
    Every message is still persistent; the queue's depth (preload) and the fake
    provider's count (both modes) show that none went missing.
    """

    def __init__(self, url: str, wire: str, events_queue: bool = True) -> None:
        self.url = url
        self.wire = wire
        self.events_queue = events_queue
        self.make: MessageMaker = celery_message if wire == "celery" else smsrelay_message
        self.queue_name = CELERY_QUEUE if wire == "celery" else SEND_QUEUE
        self.routing_key = CELERY_QUEUE if wire == "celery" else SEND_ROUTING_KEY
        self.exchange_name = CELERY_QUEUE if wire == "celery" else EXCHANGE
        self._connection: AbstractRobustConnection | None = None
        self._channel: AbstractChannel | None = None
        self._raw: aiormq.abc.AbstractConnection | None = None
        self._raw_channel: aiormq.abc.AbstractChannel | None = None

    async def connect(self) -> None:
        self._connection = await aio_pika.connect_robust(self.url)
        self._channel = await self._connection.channel()
        if self.wire == "celery":
            await declare_celery(self._channel)
        else:
            await declare_smsrelay(self._channel, self.events_queue)
        self._raw = await aiormq.connect(self.url)
        self._raw_channel = await self._raw.channel(publisher_confirms=False)

    async def close(self) -> None:
        if self._raw is not None:
            await self._raw.close()
        if self._connection is not None:
            await self._connection.close()

    async def preload(self, phase: str, n: int) -> float:
        """Put ``n`` messages in the queue (then wait until it holds them); returns msg/s.

        Published without confirms, like ``steady``; the queue's own count is the proof
        that every message is in.
        """
        started = time.perf_counter()
        for seq in range(n):
            await self._send(phase, seq)
        deadline = time.monotonic() + 60
        while await self.depth() < n:
            if time.monotonic() > deadline:
                raise RuntimeError(f"{self.queue_name} holds {await self.depth()} of {n}")
            await asyncio.sleep(0.05)
        return n / (time.perf_counter() - started)

    async def _send(self, phase: str, seq: int) -> None:
        assert self._raw_channel is not None
        body, properties = self.make(phase, seq, time.time_ns())
        await self._raw_channel.basic_publish(
            body,
            exchange=self.exchange_name,
            routing_key=self.routing_key,
            properties=Basic.Properties(**properties),
        )

    async def steady(self, phase: str, rate: float, seconds: float, tick: float = 0.002) -> int:
        """Publish at ``rate`` msg/s for ``seconds``; returns how many were published.

        Every ``tick`` it publishes the messages that fell due since the last one, each
        stamped with its own publish time.
        """
        assert self._raw_channel is not None
        loop = asyncio.get_running_loop()
        total = max(1, int(rate * seconds))
        started = loop.time()
        sent = 0
        while sent < total:
            due = min(total, int((loop.time() - started) * rate) + 1)
            for seq in range(sent, due):
                await self._send(phase, seq)
            sent = due
            next_due = started + sent / rate
            await asyncio.sleep(max(0.0, min(tick, next_due - loop.time())))
        return total

    async def depth(self) -> int:
        """Messages ready in the pipeline's queue (not those delivered and unacked)."""
        # aio-pika's robust channel answers a passive declare from its cache: ask aiormq.
        assert self._raw_channel is not None
        declared = await self._raw_channel.queue_declare(self.queue_name, passive=True)
        return declared.message_count or 0

    async def purge(self) -> None:
        assert self._raw_channel is not None
        await self._raw_channel.queue_purge(self.queue_name)
