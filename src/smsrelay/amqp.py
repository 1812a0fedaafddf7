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
from collections.abc import Callable, Coroutine, Sequence
from typing import TYPE_CHECKING, Any, Protocol

import aio_pika
import aiormq
from aio_pika.abc import (
    AbstractChannel,
    AbstractExchange,
    AbstractIncomingMessage,
    AbstractQueue,
    AbstractRobustConnection,
)
from pamqp.commands import Basic

from smsrelay import brokers, publish_time, telemetry
from smsrelay import topology as t
from smsrelay.acks import AckBatcher
from smsrelay.dispatch import DeadLetter, Dispatcher, Done, Outcome, Retry
from smsrelay.errors import ConfigError
from smsrelay.logging import get_logger
from smsrelay.models import StatusEvent
from smsrelay.otp.lane import LaneGate
from smsrelay.topology import (
    declare_alerts_exchange,
    declare_events_exchange,
    declare_send_topology,
)

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

    The OTP lane has its own tiers (``sms.retry.otp.<ms>ms``) that lead back to the lane.

    Queues carry no TTL of their own, only the per-message expiration, so that changing
    the configured delays never clashes with an existing declaration. Each holds one
    tier's delays only: RabbitMQ expires a message only at the head of its queue, so a
    queue shared by a long and a short delay would hold the short one back.
    """
    exchange = await channel.declare_exchange(
        t.RETRY_EXCHANGE, aio_pika.ExchangeType.DIRECT, durable=True
    )
    lanes = ((t.retry_queue, t.RETRY_ROUTING_KEY), (t.otp_retry_queue, t.OTP_RETRY_ROUTING_KEY))
    for tier in tiers:
        for queue_of, back_to in lanes:
            name = queue_of(tier)
            queue = await channel.declare_queue(
                name,
                durable=True,
                arguments={
                    "x-dead-letter-exchange": t.EXCHANGE,
                    "x-dead-letter-routing-key": back_to,
                },
            )
            await queue.bind(exchange, routing_key=name)
    return exchange


class DeadlineScheduler(Protocol):
    """Where a sent OTP's receipt deadline goes (``smsrelay.resend_amqp``)."""

    async def schedule(self, body: bytes, message_id: str | None, resend_after: float) -> None:
        """Park the deadline (confirmed); raise if it could not be."""


class AmqpEvents:
    """Publishes status events to ``sms.events`` with publisher confirms (past nacks)."""

    def __init__(self, publisher: brokers.ConfirmedPublisher) -> None:
        self.publisher = publisher

    async def publish(self, event: StatusEvent) -> None:
        # Not mandatory: with no subscriber bound, the broker drops the event instead
        # of returning it to us frame by frame. Straight to aiormq (publish_body): an
        # aio-pika message and its drain wait per event cost ~40 % of the publish.
        await self.publisher.publish_body(
            event.model_dump_json().encode(),
            event.routing_key,
            Basic.Properties(content_type="application/json", delivery_mode=2, message_id=event.id),
        )


class EventsConnection:
    """A robust connection that publishes status events, for processes other than the worker."""

    def __init__(self, url: str, deadline: float = 30.0) -> None:
        self.url = url
        self.deadline = deadline
        self._connection: AbstractRobustConnection | None = None
        self._events: AmqpEvents | None = None

    async def open(self) -> None:
        """Connect and declare ``sms.events``; raises when the broker cannot be reached."""
        self._connection = await brokers.connect(self.url)
        publisher = brokers.ConfirmedPublisher(
            self._connection,
            t.EVENTS_EXCHANGE,
            deadline=self.deadline,
            prepare=declare_events_exchange,
        )
        await publisher.open()
        self._events = AmqpEvents(publisher)

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


class AmqpAlerts:
    """Publishes alerts to ``sms.alerts`` with confirms, on a connection opened at the first.

    A worker that never alerts never opens it. The body and key come from
    ``smsrelay.health.alerts``; this is only the transport.
    """

    def __init__(self, url: str, deadline: float = 10.0) -> None:
        self.url = url
        self.deadline = deadline
        self._connection: AbstractRobustConnection | None = None
        self._publisher: brokers.ConfirmedPublisher | None = None
        self._opening = asyncio.Lock()

    async def send(self, routing_key: str, body: bytes, message_id: str) -> None:
        """Publish one alert (persistent JSON); raises when the broker cannot take it."""
        publisher = await self._open()
        message = aio_pika.Message(
            body,
            content_type="application/json",
            delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
            message_id=message_id,
        )
        # Not mandatory: an alert nobody subscribed to is dropped by the broker.
        await publisher.publish(message, routing_key, mandatory=False)

    async def _open(self) -> brokers.ConfirmedPublisher:
        async with self._opening:
            if self._publisher is None:
                self._connection = await brokers.connect(self.url)
                self._publisher = brokers.ConfirmedPublisher(
                    self._connection,
                    t.ALERTS_EXCHANGE,
                    deadline=self.deadline,
                    prepare=declare_alerts_exchange,
                )
                await self._publisher.open()
            return self._publisher

    async def close(self) -> None:
        """Close the connection, if one was opened."""
        self._publisher = None
        if self._connection is not None:
            with contextlib.suppress(Exception):
                await self._connection.close()
            self._connection = None


class Worker:
    """Consumes ``sms.send`` and the OTP lane ``sms.otp``; runs each delivery to an outcome.

    The lane has its own channel and prefetch: however many bulk deliveries are in
    flight, ``otp_prefetch`` more slots stay free for OTPs; and bulk deliveries yield
    to OTPs in flight (``smsrelay.otp.lane``).
    """

    def __init__(
        self,
        url: str,
        prefetch: int,
        retry: RetrySettings,
        make_dispatcher: Callable[[AmqpEvents], Dispatcher],
        otp_prefetch: int = 50,
        deadlines: DeadlineScheduler | None = None,
    ) -> None:
        self.url = url
        self.deadlines = deadlines
        self.prefetch = prefetch
        self.otp_prefetch = otp_prefetch
        self.retry = retry
        self.make_dispatcher = make_dispatcher
        self.connection: AbstractRobustConnection | None = None
        self.dispatcher: Dispatcher | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._queue: AbstractQueue | None = None
        self._consumer_tag: str | None = None
        self._otp_queue: AbstractQueue | None = None
        self._otp_consumer_tag: str | None = None
        self._gate = LaneGate()
        self._acks = AckBatcher()
        self._dlx: brokers.ConfirmedPublisher | None = None
        self._retry: brokers.ConfirmedPublisher | None = None

    async def start(self) -> None:
        """Connect (robustly: it reconnects and resumes by itself), declare, consume."""
        self.connection = await brokers.connect(self.url)
        channel = await self.connection.channel()
        await channel.set_qos(prefetch_count=self.prefetch)
        try:
            await declare_send_topology(channel)
        except ConfigError:
            await self.connection.close()
            self.connection = None
            raise
        await self._declare_retry_queues()
        await declare_events_exchange(channel)
        await declare_alerts_exchange(channel)
        # Publishing goes on channels of its own: after a nack the publisher replaces its
        # channel, which must never be the one holding our unacked deliveries.
        self._dlx = brokers.ConfirmedPublisher(self.connection, t.DLX)
        # Mandatory, returns raised: a retry queue whose node is down returns the message,
        # and the delivery goes back to sms.send instead of being dropped.
        self._retry = brokers.ConfirmedPublisher(
            self.connection, t.RETRY_EXCHANGE, on_return_raises=True
        )
        events = brokers.ConfirmedPublisher(self.connection, t.EVENTS_EXCHANGE)
        for publisher in (self._dlx, self._retry, events):
            await publisher.open()
        self.dispatcher = self.make_dispatcher(AmqpEvents(events))
        self._queue = await channel.get_queue(t.SEND_QUEUE)
        self._consumer_tag = await self._queue.consume(self._on_message)
        otp_channel = await self.connection.channel(publisher_confirms=True)
        await otp_channel.set_qos(prefetch_count=self.otp_prefetch)
        self._otp_queue = await otp_channel.get_queue(t.OTP_QUEUE)
        self._otp_consumer_tag = await self._otp_queue.consume(self._on_otp)
        log.info("worker_started", prefetch=self.prefetch, otp_prefetch=self.otp_prefetch)

    async def _declare_retry_queues(self) -> None:
        # On a channel of their own, closed at once: the consuming channel is declared
        # again on every reconnection, and a retry queue (a classic queue) whose node is
        # down cannot be, which would keep the worker from consuming at all.
        assert self.connection is not None
        channel = await self.connection.channel()
        try:
            await declare_retry_queues(channel, self.retry.tiers)
        except aiormq.exceptions.ChannelNotFoundEntity as exc:
            log.warning("retry_queue_unavailable", error=str(exc)[:300])
        finally:
            with contextlib.suppress(Exception):
                await channel.close()

    async def _on_message(self, message: AbstractIncomingMessage) -> None:
        self._received(message)
        # Each delivery runs as its own task so that `prefetch` sends are in flight at once.
        # Its publish time is read now: without one, the wait counts from its arrival.
        self._spawn(self._bulk(message, _published_at(message)))

    async def _on_otp(self, message: AbstractIncomingMessage) -> None:
        self._received(message)
        self._spawn(self._otp(message, _published_at(message)))

    def _received(self, message: AbstractIncomingMessage) -> None:
        # Before anything awaits: deliveries register in the order the broker tagged them.
        if message.delivery_tag is not None:
            self._acks.received(message.channel, message.delivery_tag)

    def _settled(self, message: AbstractIncomingMessage) -> None:
        if message.delivery_tag is not None:
            self._acks.settled(message.channel, message.delivery_tag)

    def _spawn(self, work: Coroutine[Any, Any, None]) -> None:
        task = asyncio.create_task(work)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _bulk(self, message: AbstractIncomingMessage, published_at: float) -> None:
        publish_time.delivering(published_at)
        await self._gate.bulk()
        await self._traced(message)

    async def _otp(self, message: AbstractIncomingMessage, published_at: float) -> None:
        publish_time.delivering(published_at)
        async with self._gate.otp():
            await self._traced(message)

    async def _traced(self, message: AbstractIncomingMessage) -> None:
        # The trace context comes in the message headers (W3C traceparent); its span
        # covers the whole delivery, up to the ack.
        with telemetry.consuming(
            message.message_id,
            message.exchange or t.EXCHANGE,
            message.routing_key,
            message.headers,
            _int_header(message.headers.get(t.ATTEMPT_HEADER)),
        ):
            await self._process(message)

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
            self._settled(message)
            await _settle(message.nack(requeue=True))
            raise
        except Exception:
            # Store or broker trouble: give the message back; dedupe makes a rerun safe.
            log.exception("delivery_failed", message_id=message.message_id)
            await asyncio.sleep(PAUSE_AFTER_FAILURE)
            self._settled(message)
            await _settle(message.nack(requeue=True))
            return
        if message.delivery_tag is not None:
            # With this turn's other acks, in as few frames as possible (smsrelay.acks).
            self._acks.ack(message.channel, message.delivery_tag)

    async def _carry_out(self, outcome: Outcome, message: AbstractIncomingMessage) -> None:
        if isinstance(outcome, DeadLetter):
            assert self._dlx is not None
            headers = dict(message.headers)
            headers[t.REASON_HEADER] = outcome.reason
            telemetry.inject(headers)  # a dead letter stays in its trace
            await self._dlx.publish(_copy(message, headers), message.routing_key or "")
        elif isinstance(outcome, Retry):
            assert self._retry is not None
            headers = dict(message.headers)
            headers[t.ATTEMPT_HEADER] = outcome.attempt
            telemetry.inject(headers)  # the next round continues this trace
            tier = self.retry.tier_for(outcome.delay)
            from_lane = _is_otp_lane(message)
            await self._retry.publish(
                _copy(message, headers, expiration=outcome.delay),
                t.otp_retry_queue(tier) if from_lane else t.retry_queue(tier),
                mandatory=True,
            )
        elif isinstance(outcome, Done) and outcome.resend_after and self.deadlines is not None:
            # Before the ack: once the send is acked, its deadline is in the broker.
            await self.deadlines.schedule(message.body, message.message_id, outcome.resend_after)

    async def stop(self, grace_period: float) -> None:
        """Stop taking work, let in-flight sends finish for ``grace_period``, then close."""
        for queue, tag in (
            (self._queue, self._consumer_tag),
            (self._otp_queue, self._otp_consumer_tag),
        ):
            if queue is not None and tag is not None:
                with contextlib.suppress(Exception):
                    await queue.cancel(tag)
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
        # The producer's publish time (the timestamp_in_ms header is among `headers`):
        # a retried request's wait to its provider request includes its retry delays.
        timestamp=message.timestamp,
    )


def _published_at(message: AbstractIncomingMessage) -> float:
    return publish_time.published_at(message.headers, message.timestamp)


def _is_otp_lane(message: AbstractIncomingMessage) -> bool:
    """True for a delivery from ``sms.otp`` (its routing key is one the lane's binding takes)."""
    key = message.routing_key or ""
    return key == t.OTP_ROUTING_KEY or key.startswith(t.OTP_ROUTING_KEY + ".")


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
