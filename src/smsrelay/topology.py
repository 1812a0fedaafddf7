"""The AMQP topology: its names (public interface, see docs/asyncapi.yaml) and their declaration.

Producers (``smsrelay.client``), the dead-letter tools (``smsrelay.dlq``) and the worker
(``smsrelay.amqp``) all declare through here, so a producer imports aio-pika and these
names, never the worker, the store or the API.
"""

from __future__ import annotations

from typing import Any, Final

import aio_pika
import aiormq
from aio_pika.abc import AbstractChannel, AbstractExchange

from smsrelay.errors import ConfigError

EXCHANGE: Final[str] = "sms"
SEND_QUEUE: Final[str] = "sms.send"
SEND_BINDING: Final[str] = "sms.send.#"
SEND_ROUTING_KEY: Final[str] = "sms.send"
RETRY_ROUTING_KEY: Final[str] = "sms.send.retry"
DLX: Final[str] = "sms.dlx"
DEAD_QUEUE: Final[str] = "sms.dead"
EVENTS_EXCHANGE: Final[str] = "sms.events"
EVENT_KEY_PREFIX: Final[str] = "sms.status."
RETRY_EXCHANGE: Final[str] = "sms.retry"
RETRY_QUEUE_PREFIX: Final[str] = "sms.retry."
RETRY_QUEUE_SUFFIX: Final[str] = "ms"
REASON_HEADER: Final[str] = "x-smsrelay-reason"
ATTEMPT_HEADER: Final[str] = "x-smsrelay-attempt"

# A request that fails this many times for reasons other than its content (the store
# or broker down, a bug) is dead-lettered by the broker (quorum queues count
# deliveries), so one poison message cannot wedge the queue.
DELIVERY_LIMIT: Final[int] = 50


async def declare_send_topology(channel: AbstractChannel) -> AbstractExchange:
    """Exchange ``sms``, queue ``sms.send`` and its dead-letter path; returns ``sms``."""
    exchange = await channel.declare_exchange(EXCHANGE, aio_pika.ExchangeType.TOPIC, durable=True)
    dlx = await channel.declare_exchange(DLX, aio_pika.ExchangeType.FANOUT, durable=True)
    dead = await channel.declare_queue(
        DEAD_QUEUE, durable=True, arguments={"x-queue-type": "quorum"}
    )
    await dead.bind(dlx, routing_key="#")
    arguments: dict[str, Any] = {
        "x-queue-type": "quorum",
        "x-dead-letter-exchange": DLX,
        "x-delivery-limit": DELIVERY_LIMIT,
    }
    try:
        queue = await channel.declare_queue(SEND_QUEUE, durable=True, arguments=arguments)
    except aiormq.exceptions.ChannelPreconditionFailed as exc:
        # RabbitMQ never changes a queue's arguments in place: say what to do about it.
        raise ConfigError(
            SEND_QUEUE,
            f"the broker has this queue with other arguments ({exc.args[0] if exc.args else exc});"
            f" smsrelay declares {arguments}: drain and delete the queue, then start again",
        ) from None
    await queue.bind(exchange, routing_key=SEND_BINDING)
    return exchange


async def declare_events_exchange(channel: AbstractChannel) -> AbstractExchange:
    """The topic exchange ``sms.events``."""
    return await channel.declare_exchange(
        EVENTS_EXCHANGE, aio_pika.ExchangeType.TOPIC, durable=True
    )


def retry_queue(delay: float) -> str:
    """The retry queue of a delay tier, named by its delay: 5 s → ``sms.retry.5000ms``.

    Queues of versions before delay tiers were named by retry round (``sms.retry.1``…);
    the unit keeps the two apart, and those drain by themselves (see docs/asyncapi.yaml).
    """
    return f"{RETRY_QUEUE_PREFIX}{round(delay * 1000)}{RETRY_QUEUE_SUFFIX}"
