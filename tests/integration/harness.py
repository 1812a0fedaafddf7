"""Helpers for tests that run a real worker against the test's own vhost."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import aio_pika
from aio_pika.abc import AbstractIncomingMessage

from smsrelay import settings as config
from smsrelay.amqp import declare_events_exchange, declare_send_topology
from smsrelay.providers.simulator import SimulatorProvider
from smsrelay.runtime import Runtime


class EventLog:
    """Collects every status event published to ``sms.events`` in a vhost."""

    def __init__(self) -> None:
        self.events: list[dict[str, Any]] = []

    def of(self, message_id: str) -> list[dict[str, Any]]:
        """Events for one id, in arrival order."""
        return [e for e in self.events if e["id"] == message_id]

    def states(self, message_id: str) -> list[str]:
        """States of one id's events."""
        return [e["state"] for e in self.of(message_id)]

    async def _on(self, message: AbstractIncomingMessage) -> None:
        async with message.process():
            event = json.loads(message.body)
            assert message.routing_key == f"sms.status.{event['state']}"
            self.events.append(event)


@asynccontextmanager
async def event_log(amqp_url: str) -> AsyncIterator[EventLog]:
    """An ``EventLog`` bound to ``sms.status.#`` for the duration of the block."""
    log = EventLog()
    connection = await aio_pika.connect_robust(amqp_url)
    async with connection:
        channel = await connection.channel()
        exchange = await declare_events_exchange(channel)
        queue = await channel.declare_queue(exclusive=True)
        await queue.bind(exchange, routing_key="sms.status.#")
        await queue.consume(log._on)
        yield log


@asynccontextmanager
async def running_worker(
    amqp_url: str, database_url: str, **overrides: Any
) -> AsyncIterator[Runtime]:
    """A started in-process worker; drained and closed on exit."""
    overrides.setdefault("retry", {"max_attempts": 3, "delays": [0.3], "jitter": 0.0})
    settings = config.load(amqp_url=amqp_url, database_url=database_url, **overrides)
    runtime = await Runtime.build(settings)
    try:
        await runtime.start_worker()
        yield runtime
    finally:
        await runtime.close()


def simulator(runtime: Runtime, name: str) -> SimulatorProvider:
    """The named simulator provider of a runtime."""
    provider = runtime.providers[name]
    assert isinstance(provider, SimulatorProvider)
    return provider


async def publish_raw(amqp_url: str, bodies: list[bytes], routing_key: str = "sms.send") -> None:
    """Publish bodies as they are (persistent, confirmed) to the ``sms`` exchange."""
    async with await aio_pika.connect(amqp_url) as connection:
        channel = await connection.channel(publisher_confirms=True)
        exchange = await declare_send_topology(channel)
        for body in bodies:
            await exchange.publish(
                aio_pika.Message(body, delivery_mode=aio_pika.DeliveryMode.PERSISTENT),
                routing_key=routing_key,
            )


async def drain_dead(amqp_url: str) -> list[AbstractIncomingMessage]:
    """Take every message from ``sms.dead``."""
    out: list[AbstractIncomingMessage] = []
    async with await aio_pika.connect(amqp_url) as connection:
        channel = await connection.channel()
        queue = await channel.declare_queue("sms.dead", passive=True)
        while (message := await queue.get(no_ack=True, fail=False)) is not None:
            out.append(message)
    return out


def request(message_id: str, to: str = "+14155550123", **extra: Any) -> bytes:
    """A valid v1 request body."""
    return json.dumps({"id": message_id, "to": to, "body": f"hello {message_id}", **extra}).encode()
