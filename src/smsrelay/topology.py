"""The AMQP topology: its names (public interface, see docs/asyncapi.yaml) and their declaration.

Producers (``smsrelay.client``), the dead-letter tools (``smsrelay.dlq``) and the worker
(``smsrelay.amqp``) all declare through here, so a producer imports aio-pika and these
names, never the worker, the store or the API.
"""

from __future__ import annotations

from typing import Any, Final

import aio_pika
import aiormq
from aio_pika.abc import AbstractChannel, AbstractExchange, AbstractQueue

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
# Delivery health alerts (smsrelay.health.alerts): routing key sms.alert.<type>.
ALERTS_EXCHANGE: Final[str] = "sms.alerts"
ALERT_KEY_PREFIX: Final[str] = "sms.alert."
RETRY_EXCHANGE: Final[str] = "sms.retry"
RETRY_QUEUE_PREFIX: Final[str] = "sms.retry."
RETRY_QUEUE_SUFFIX: Final[str] = "ms"
# The OTP lane: its own quorum queue, consumed on its own channel and prefetch, so a
# login code never waits behind bulk (quorum queues have no priorities). Its binding is
# outside ``sms.send.#`` so a lane message lands in the lane only, and ``sms.send.<tag>``
# keeps meaning "the send queue, tagged" for v1 producers.
OTP_QUEUE: Final[str] = "sms.otp"
OTP_BINDING: Final[str] = "sms.otp.#"
OTP_ROUTING_KEY: Final[str] = "sms.otp"
OTP_RETRY_ROUTING_KEY: Final[str] = "sms.otp.retry"
OTP_RETRY_QUEUE_PREFIX: Final[str] = "sms.retry.otp."
# Verifications and conversion feedback over AMQP (smsrelay.verify_amqp): requests to
# ``sms`` with these keys, answers to the request's reply_to with its correlation_id.
VERIFY_QUEUE: Final[str] = "sms.verify"
VERIFY_BINDING: Final[str] = "sms.verify.#"
VERIFY_START_KEY: Final[str] = "sms.verify.start"
VERIFY_CHECK_KEY: Final[str] = "sms.verify.check"
FEEDBACK_KEY: Final[str] = "sms.verify.feedback"
# Receipt deadlines of OTPs (smsrelay.otp.resend_deadline): a sent OTP with resend_after
# parks a copy of its request in a delay tier of ``sms.resend`` (TTL queues named by
# their delay, like the retry tiers) that dead-letters into ``sms.resend.check``, where
# a worker looks in the store for a delivered receipt and resends if there is none.
RESEND_EXCHANGE: Final[str] = "sms.resend"
RESEND_QUEUE_PREFIX: Final[str] = "sms.resend."
RESEND_CHECK_QUEUE: Final[str] = "sms.resend.check"
RESEND_CHECK_KEY: Final[str] = "sms.resend.check"
# Fixed tiers: a deadline waits in the longest tier not beyond it, then again for the
# rest, so any resend_after (1 s to 1 h) is met within a second with four queues.
RESEND_TIERS: Final[tuple[float, ...]] = (1.0, 5.0, 30.0, 300.0)
# When the deadline falls (Unix time in milliseconds) and which resend it is for (1, 2…).
RESEND_DUE_HEADER: Final[str] = "x-smsrelay-resend-due"
RESEND_HEADER: Final[str] = "x-smsrelay-resend"
REASON_HEADER: Final[str] = "x-smsrelay-reason"
ATTEMPT_HEADER: Final[str] = "x-smsrelay-attempt"

# A request that fails this many times for reasons other than its content (the store
# or broker down, a bug) is dead-lettered by the broker (quorum queues count
# deliveries), so one poison message cannot wedge the queue.
DELIVERY_LIMIT: Final[int] = 50


async def declare_send_topology(channel: AbstractChannel) -> AbstractExchange:
    """Exchange ``sms``, queues ``sms.send``, ``sms.otp``, ``sms.verify``, the dead-letter path.

    Returns ``sms``. Declaring is idempotent: it is also how an existing deployment gets
    the OTP lane (``smsrelay topology apply``).
    """
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
    queues = ((SEND_QUEUE, SEND_BINDING), (OTP_QUEUE, OTP_BINDING), (VERIFY_QUEUE, VERIFY_BINDING))
    for name, binding in queues:
        queue = await _declare_queue(channel, name, arguments)
        await queue.bind(exchange, routing_key=binding)
    return exchange


async def _declare_queue(
    channel: AbstractChannel, name: str, arguments: dict[str, Any]
) -> AbstractQueue:
    try:
        return await channel.declare_queue(name, durable=True, arguments=arguments)
    except aiormq.exceptions.ChannelPreconditionFailed as exc:
        # RabbitMQ never changes a queue's arguments in place: say what to do about it.
        raise ConfigError(
            name,
            f"the broker has this queue with other arguments ({exc.args[0] if exc.args else exc});"
            f" smsrelay declares {arguments}: drain and delete the queue, then start again",
        ) from None


def routing_key_for(kind: str) -> str:
    """The routing key a producer that knows the OTP lane publishes a request of ``kind`` with."""
    return OTP_ROUTING_KEY if kind == "otp" else SEND_ROUTING_KEY


def retry_routing_key(queue: str) -> str:
    """The key a retried message comes back with: to the queue it was taken from."""
    return OTP_RETRY_ROUTING_KEY if queue == OTP_QUEUE else RETRY_ROUTING_KEY


async def declare_events_exchange(channel: AbstractChannel) -> AbstractExchange:
    """The topic exchange ``sms.events``."""
    return await channel.declare_exchange(
        EVENTS_EXCHANGE, aio_pika.ExchangeType.TOPIC, durable=True
    )


async def declare_alerts_exchange(channel: AbstractChannel) -> AbstractExchange:
    """The topic exchange ``sms.alerts`` (routing keys ``sms.alert.<type>``)."""
    return await channel.declare_exchange(
        ALERTS_EXCHANGE, aio_pika.ExchangeType.TOPIC, durable=True
    )


def retry_queue(delay: float) -> str:
    """The retry queue of a delay tier, named by its delay: 5 s → ``sms.retry.5000ms``.

    Queues of versions before delay tiers were named by retry round (``sms.retry.1``…);
    the unit keeps the two apart, and those drain by themselves (see docs/asyncapi.yaml).
    """
    return f"{RETRY_QUEUE_PREFIX}{round(delay * 1000)}{RETRY_QUEUE_SUFFIX}"


def otp_retry_queue(delay: float) -> str:
    """The OTP lane's retry queue of a delay tier: 5 s → ``sms.retry.otp.5000ms``.

    Apart from the bulk tiers because a queue's dead-letter routing key is fixed: these
    send a retried OTP back to the lane, not behind the bulk backlog.
    """
    return f"{OTP_RETRY_QUEUE_PREFIX}{round(delay * 1000)}{RETRY_QUEUE_SUFFIX}"


def resend_queue(tier: float) -> str:
    """The delay queue of a receipt-deadline tier: 5 s → ``sms.resend.5000ms``."""
    return f"{RESEND_QUEUE_PREFIX}{round(tier * 1000)}{RETRY_QUEUE_SUFFIX}"


def resend_tier(remaining: float) -> float:
    """The tier a deadline ``remaining`` seconds away waits in next: the longest not beyond it.

    Under the shortest tier, the shortest: a resend comes at most that late, never early.
    """
    return max((tier for tier in RESEND_TIERS if tier <= remaining), default=RESEND_TIERS[0])


async def declare_resend_topology(channel: AbstractChannel) -> AbstractExchange:
    """Exchange ``sms.resend``, its delay tiers and the queue ``sms.resend.check``.

    The tiers are classic queues without a TTL of their own: each message carries its
    tier's delay as its expiration, so every message of a queue waits as long and the
    head always expires first. The check queue is a quorum queue with the dead-letter
    path and delivery limit of the send queues.
    """
    exchange = await channel.declare_exchange(
        RESEND_EXCHANGE, aio_pika.ExchangeType.DIRECT, durable=True
    )
    for tier in RESEND_TIERS:
        name = resend_queue(tier)
        queue = await channel.declare_queue(
            name,
            durable=True,
            arguments={
                "x-dead-letter-exchange": RESEND_EXCHANGE,
                "x-dead-letter-routing-key": RESEND_CHECK_KEY,
            },
        )
        await queue.bind(exchange, routing_key=name)
    await channel.declare_exchange(DLX, aio_pika.ExchangeType.FANOUT, durable=True)
    check = await _declare_queue(
        channel,
        RESEND_CHECK_QUEUE,
        {
            "x-queue-type": "quorum",
            "x-dead-letter-exchange": DLX,
            "x-delivery-limit": DELIVERY_LIMIT,
        },
    )
    await check.bind(exchange, routing_key=RESEND_CHECK_KEY)
    return exchange
