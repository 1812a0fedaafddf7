"""The worker's AMQP boundary: topology, the consume loop, dead-letters, retries, events.

Everything the worker and the API say to the broker goes through here. It declares the v1
topology (``smsrelay.topology``, which the producer client and the dead-letter tools
share without importing the worker), feeds each delivery to the ``Dispatcher`` and
carries out the ``Outcome``: ack, dead-letter with a reason header, or republish into a
TTL retry queue. A delivery is acked only after its outcome is recorded and any message it
produced (dead-letter, retry) is confirmed by the broker.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

import aio_pika
from aio_pika.abc import (
    AbstractChannel,
    AbstractExchange,
    AbstractIncomingMessage,
    AbstractQueue,
    AbstractRobustConnection,
)

from smsrelay import topology as t
from smsrelay.dispatch import DeadLetter, Dispatcher, Outcome, Retry
from smsrelay.errors import ConfigError
from smsrelay.logging import get_logger
from smsrelay.models import StatusEvent
from smsrelay.topology import declare_events_exchange, declare_send_topology

if TYPE_CHECKING:
    from smsrelay.settings import RetrySettings

log = get_logger(__name__)

# With PAUSE_AFTER_FAILURE between tries (topology.DELIVERY_LIMIT of them), an outage
# of the store shorter than about four minutes dead-letters nothing.
PAUSE_AFTER_FAILURE = 5.0


async def declare_retry_queues(
    channel: AbstractChannel, tiers: Sequence[float]
) -> AbstractExchange:
    """One queue per delay tier (``sms.retry.<ms>ms``): parked messages dead-letter back to ``sms``.

    Queues carry no TTL of their own, only the per-message expiration, so that changing
    the configured delays never clashes with an existing declaration. Each holds one
    tier's delays only: RabbitMQ expires a message only at the head of its queue, so a
    queue shared by a long and a short delay would hold the short one back.
    """
    exchange = await channel.declare_exchange(
        t.RETRY_EXCHANGE, aio_pika.ExchangeType.DIRECT, durable=True
    )
    for tier in tiers:
        name = t.retry_queue(tier)
        queue = await channel.declare_queue(
            name,
            durable=True,
            arguments={
                "x-dead-letter-exchange": t.EXCHANGE,
                "x-dead-letter-routing-key": t.RETRY_ROUTING_KEY,
            },
        )
        await queue.bind(exchange, routing_key=name)
    return exchange


class AmqpEvents:
    """Publishes status events to ``sms.events`` with publisher confirms."""

    def __init__(self, exchange: AbstractExchange) -> None:
        self.exchange = exchange

    async def publish(self, event: StatusEvent) -> None:
        message = aio_pika.Message(
            event.model_dump_json().encode(),
            content_type="application/json",
            delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
            message_id=event.id,
        )
        # Not mandatory: with no subscriber bound, the broker drops the event instead
        # of returning it to us frame by frame.
        await self.exchange.publish(message, routing_key=event.routing_key, mandatory=False)


class EventsConnection:
    """A robust connection that publishes status events, for processes other than the worker."""

    def __init__(self, url: str) -> None:
        self.url = url
        self._connection: AbstractRobustConnection | None = None
        self._events: AmqpEvents | None = None

    async def open(self) -> None:
        """Connect and declare ``sms.events``; raises when the broker cannot be reached."""
        self._connection = await aio_pika.connect_robust(self.url)
        channel = await self._connection.channel(publisher_confirms=True)
        self._events = AmqpEvents(await declare_events_exchange(channel))

    @property
    def ready(self) -> bool:
        """True while the connection is open (it reconnects by itself)."""
        connection = self._connection
        return (
            self._events is not None
            and connection is not None
            and not connection.is_closed
            and connection.connected.is_set()
        )

    async def publish(self, event: StatusEvent) -> None:
        """Publish one event with a publisher confirm."""
        if self._events is None:
            raise RuntimeError("events connection is not open")
        await self._events.publish(event)

    async def close(self) -> None:
        """Close the connection."""
        self._events = None
        if self._connection is not None:
            with contextlib.suppress(Exception):
                await self._connection.close()
            self._connection = None


class Worker:
    """Consumes ``sms.send`` and runs each delivery through the dispatcher."""

    def __init__(
        self,
        url: str,
        prefetch: int,
        retry: RetrySettings,
        make_dispatcher: Callable[[AmqpEvents], Dispatcher],
    ) -> None:
        self.url = url
        self.prefetch = prefetch
        self.retry = retry
        self.make_dispatcher = make_dispatcher
        self.connection: AbstractRobustConnection | None = None
        self.dispatcher: Dispatcher | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._queue: AbstractQueue | None = None
        self._consumer_tag: str | None = None
        self._dlx: AbstractExchange | None = None
        self._retry: AbstractExchange | None = None

    async def start(self) -> None:
        """Connect (robustly: it reconnects and resumes by itself), declare, consume."""
        self.connection = await aio_pika.connect_robust(self.url)
        channel = await self.connection.channel(publisher_confirms=True)
        await channel.set_qos(prefetch_count=self.prefetch)
        try:
            await declare_send_topology(channel)
        except ConfigError:
            await self.connection.close()
            self.connection = None
            raise
        self._dlx = await channel.get_exchange(t.DLX)
        self._retry = await declare_retry_queues(channel, self.retry.tiers)
        self.dispatcher = self.make_dispatcher(AmqpEvents(await declare_events_exchange(channel)))
        self._queue = await channel.get_queue(t.SEND_QUEUE)
        self._consumer_tag = await self._queue.consume(self._on_message)
        log.info("worker_started", prefetch=self.prefetch)

    async def _on_message(self, message: AbstractIncomingMessage) -> None:
        # Each delivery runs as its own task so that `prefetch` sends are in flight at once.
        task = asyncio.create_task(self._process(message))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _process(self, message: AbstractIncomingMessage) -> None:
        assert self.dispatcher is not None
        retry_round = _int_header(message.headers.get(t.ATTEMPT_HEADER))
        try:
            # The id stays in flight until the outcome is carried out: a redelivery of it
            # (after the connection dropped) waits instead of being acked too early.
            async with self.dispatcher.process(
                message.body, redelivered=bool(message.redelivered), retry_round=retry_round
            ) as outcome:
                await self._carry_out(outcome, message)
        except asyncio.CancelledError:
            await _settle(message.nack(requeue=True))
            raise
        except Exception:
            # Store or broker trouble: give the message back; dedupe makes a rerun safe.
            log.exception("delivery_failed", message_id=message.message_id)
            await asyncio.sleep(PAUSE_AFTER_FAILURE)
            await _settle(message.nack(requeue=True))
            return
        await _settle(message.ack())

    async def _carry_out(self, outcome: Outcome, message: AbstractIncomingMessage) -> None:
        if isinstance(outcome, DeadLetter):
            assert self._dlx is not None
            headers = dict(message.headers)
            headers[t.REASON_HEADER] = outcome.reason
            await self._dlx.publish(_copy(message, headers), routing_key=message.routing_key or "")
        elif isinstance(outcome, Retry):
            assert self._retry is not None
            headers = dict(message.headers)
            headers[t.ATTEMPT_HEADER] = outcome.attempt
            await self._retry.publish(
                _copy(message, headers, expiration=outcome.delay),
                routing_key=t.retry_queue(self.retry.tier_for(outcome.delay)),
            )

    async def stop(self, grace_period: float) -> None:
        """Stop taking work, let in-flight sends finish for ``grace_period``, then close."""
        if self._queue is not None and self._consumer_tag is not None:
            with contextlib.suppress(Exception):
                await self._queue.cancel(self._consumer_tag)
        if self._tasks:
            log.info("draining", in_flight=len(self._tasks), grace_period=grace_period)
            _, pending = await asyncio.wait(set(self._tasks), timeout=grace_period)
            for task in pending:
                task.cancel()
            if pending:
                await asyncio.wait(pending, timeout=5)
        if self.connection is not None:
            # Unacked deliveries go back to the queue when the channel closes.
            await self.connection.close()
        log.info("worker_stopped")

    @property
    def in_flight(self) -> int:
        """Deliveries being processed right now."""
        return len(self._tasks)


def _copy(
    message: AbstractIncomingMessage, headers: dict[str, Any], expiration: float | None = None
) -> aio_pika.Message:
    """The original body byte for byte, with new headers."""
    return aio_pika.Message(
        message.body,
        headers=headers,
        content_type=message.content_type,
        content_encoding=message.content_encoding,
        delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
        message_id=message.message_id,
        expiration=expiration,
    )


def _int_header(value: Any) -> int:
    try:
        return max(0, int(value)) if value is not None else 0
    except (TypeError, ValueError):
        return 0


async def _settle(action: Any) -> None:
    # After a broker restart the old channel is gone: the delivery will come again,
    # so a failed ack/nack is not an error worth crashing for.
    try:
        await action
    except Exception as exc:
        log.warning("settle_failed", error=type(exc).__name__)
