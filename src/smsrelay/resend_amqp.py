"""Receipt deadlines on the broker: parked in delay tiers, checked from ``sms.resend.check``.

The worker calls ``schedule`` for a sent OTP with ``resend_after`` before it acks the
send, so the deadline lives in the broker from then on and outlives any worker: a
restarted or another worker checks it. A deadline waits in the longest tier not beyond
what is left of it (``topology.resend_tier``) and comes back to ``sms.resend.check``;
the consumer hands it to the ``DeadlineChecker`` and carries out its answer (park again
for the rest, park the next resend's deadline, or nothing), acking only after that.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable, Coroutine
from typing import Any

import aio_pika
from aio_pika.abc import AbstractIncomingMessage, AbstractQueue, AbstractRobustConnection

from smsrelay import brokers
from smsrelay import topology as t
from smsrelay.amqp import AmqpEvents
from smsrelay.logging import get_logger
from smsrelay.otp.resend_deadline import Deadline, DeadlineChecker, Wait
from smsrelay.receipts import EventSink

log = get_logger(__name__)

# As the worker's: an outage of the store shorter than a few minutes dead-letters nothing.
PAUSE_AFTER_FAILURE = 5.0
# A header beyond this (ms since 1970) is not a deadline smsrelay wrote: due now.
_MAX_DUE_MS = 10**14


class ResendDeadlines:
    """Parks receipt deadlines and consumes ``sms.resend.check`` (one per worker process)."""

    def __init__(
        self,
        url: str,
        make_checker: Callable[[EventSink], DeadlineChecker],
        prefetch: int = 50,
    ) -> None:
        self.url = url
        self.make_checker = make_checker
        self.prefetch = prefetch
        self.connection: AbstractRobustConnection | None = None
        self.checker: DeadlineChecker | None = None
        self._parking: brokers.ConfirmedPublisher | None = None
        self._queue: AbstractQueue | None = None
        self._tag: str | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    async def start(self) -> None:
        """Connect, declare ``sms.resend`` and its queues, and consume the checks."""
        self.connection = await brokers.connect(self.url)
        channel = await self.connection.channel()
        await channel.set_qos(prefetch_count=self.prefetch)
        await t.declare_resend_topology(channel)
        await t.declare_events_exchange(channel)
        # Mandatory: a tier that cannot take the deadline raises, and the send (or the
        # check) is not acked, rather than the deadline being dropped.
        self._parking = brokers.ConfirmedPublisher(
            self.connection, t.RESEND_EXCHANGE, on_return_raises=True
        )
        events = brokers.ConfirmedPublisher(self.connection, t.EVENTS_EXCHANGE)
        for publisher in (self._parking, events):
            await publisher.open()
        self.checker = self.make_checker(AmqpEvents(events))
        self._queue = await channel.get_queue(t.RESEND_CHECK_QUEUE)
        self._tag = await self._queue.consume(self._on_check)

    async def schedule(self, body: bytes, message_id: str | None, resend_after: float) -> None:
        """Park the first resend's deadline of a request just sent (``body``: its bytes)."""
        await self.park(Deadline(body, 1, time.time() + resend_after), message_id)

    async def park(self, deadline: Deadline, message_id: str | None) -> None:
        """Publish ``deadline`` into the tier it waits in next (confirmed)."""
        assert self._parking is not None, "start() first"
        tier = t.resend_tier(deadline.due - time.time())
        message = aio_pika.Message(
            deadline.body,
            headers={
                t.RESEND_HEADER: deadline.resend,
                t.RESEND_DUE_HEADER: round(deadline.due * 1000),
            },
            content_type="application/json",
            delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
            message_id=message_id,
            expiration=tier,
        )
        await self._parking.publish(message, t.resend_queue(tier), mandatory=True)

    async def _on_check(self, message: AbstractIncomingMessage) -> None:
        self._spawn(self._check(message))

    def _spawn(self, work: Coroutine[Any, Any, None]) -> None:
        task = asyncio.create_task(work)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _check(self, message: AbstractIncomingMessage) -> None:
        assert self.checker is not None
        deadline = _deadline(message)
        try:
            checked = await self.checker.check(deadline, redelivered=bool(message.redelivered))
            if isinstance(checked, Wait):
                await self.park(deadline, message.message_id)
            elif checked.next is not None:
                await self.park(checked.next, message.message_id)
        except asyncio.CancelledError:
            await _settle(message.nack(requeue=True))
            raise
        except Exception:
            # Store or broker trouble: the check is safe to run again (the store decides).
            log.exception("resend_check_failed", message_id=message.message_id)
            await asyncio.sleep(PAUSE_AFTER_FAILURE)
            await _settle(message.nack(requeue=True))
            return
        await _settle(message.ack())

    async def stop(self, grace_period: float) -> None:
        """Stop taking checks, let those under way finish for ``grace_period``, then close."""
        if self._queue is not None and self._tag is not None:
            with contextlib.suppress(Exception):
                await self._queue.cancel(self._tag)
        if self._tasks:
            _, pending = await asyncio.wait(set(self._tasks), timeout=grace_period)
            for task in pending:
                task.cancel()
            if pending:
                await asyncio.wait(pending, timeout=5)
        if self.connection is not None:
            with contextlib.suppress(Exception):
                await self.connection.close()
            self.connection = None


def _deadline(message: AbstractIncomingMessage) -> Deadline:
    """The deadline a check carries; headers that are missing or absurd mean "resend 1, due now"."""
    resend = _bounded(message.headers.get(t.RESEND_HEADER), 1, 100, default=1)
    due_ms = _bounded(message.headers.get(t.RESEND_DUE_HEADER), 0, _MAX_DUE_MS, default=0)
    return Deadline(message.body, resend, due_ms / 1000)


def _bounded(value: Any, low: int, high: int, *, default: int) -> int:
    try:
        number = int(value)
    except (TypeError, ValueError, OverflowError):
        return default
    return number if low <= number <= high else default


async def _settle(action: Any) -> None:
    # After a broker restart the old channel is gone: the check will come again.
    try:
        await action
    except Exception as exc:
        log.warning("settle_failed", error=type(exc).__name__)
