"""Queue depth and consumers of smsrelay's queues, read from the broker on a timer.

A passive declare answers both numbers without the management plugin, with the
permissions smsrelay already has. The numbers feed the ``smsrelay_queue_*`` gauges
and ``/readyz`` (an API with nobody consuming ``sms.send`` is not ready: requests
would pile up unseen). A poll that fails leaves no stale number behind: the gauges
are cleared and readiness says the consumers are unknown.
"""

from __future__ import annotations

import asyncio
import contextlib

import aiormq
from aio_pika.abc import AbstractChannel, AbstractRobustConnection

from smsrelay import brokers
from smsrelay import topology as t
from smsrelay.logging import get_logger
from smsrelay.metrics import Metrics

log = get_logger(__name__)


def watched_queues(retry_tiers: list[float]) -> list[str]:
    """The work queues (``sms.send``, the OTP lane, ``sms.verify``), ``sms.dead``, the retry
    queue of every delay tier (bulk and OTP) and the resend deadline queues."""
    retries = [t.retry_queue(d) for d in retry_tiers] + [t.otp_retry_queue(d) for d in retry_tiers]
    resends = [t.resend_queue(d) for d in t.RESEND_TIERS] + [t.RESEND_CHECK_QUEUE]
    work = [t.SEND_QUEUE, t.OTP_QUEUE, t.VERIFY_QUEUE]
    return [*work, t.DEAD_QUEUE, *retries, *resends]


class QueueStats:
    """Polls the broker every ``interval`` seconds; ``consumers(queue)`` is the last answer."""

    def __init__(self, url: str, queues: list[str], metrics: Metrics, interval: float) -> None:
        self.url = url
        self.queues = queues
        self.metrics = metrics
        self.interval = interval
        self._last: dict[str, tuple[int, int]] = {}
        self._connection: AbstractRobustConnection | None = None
        self._channel: AbstractChannel | None = None
        self._task: asyncio.Task[None] | None = None
        self.polled = asyncio.Event()

    def consumers(self, queue: str = t.SEND_QUEUE) -> int | None:
        """Consumers of ``queue`` at the last poll; None when unknown (no successful poll)."""
        last = self._last.get(queue)
        return last[1] if last else None

    def start(self) -> None:
        """Poll in the background until ``close``; never raises for a broker that is down."""
        self._task = asyncio.create_task(self._run())

    async def _run(self) -> None:
        while True:
            await self.poll()
            await asyncio.sleep(self.interval)

    async def poll(self) -> None:
        """Read every queue once and update the gauges."""
        try:
            self._connection = self._connection or await brokers.connect(self.url)
            for queue in self.queues:
                await self._read(queue)
        except Exception as exc:  # broker down or vhost gone: say so, retry next round
            self.metrics.queue_poll_failures.inc()
            self._forget()
            log.warning("queue_poll_failed", error=type(exc).__name__)
        self.polled.set()

    async def _read(self, queue: str) -> None:
        assert self._connection is not None
        if self._channel is None or self._channel.is_closed:
            self._channel = await self._connection.channel()
        try:
            declared = await self._channel.declare_queue(queue, passive=True)
        except aiormq.exceptions.ChannelNotFoundEntity:
            # Not declared yet (no worker ever started here): nothing waits, nobody consumes.
            counts = (0, 0)
        else:
            result = declared.declaration_result
            counts = (result.message_count or 0, result.consumer_count or 0)
        self._last[queue] = counts
        self.metrics.queue_messages.labels(queue).set(counts[0])
        self.metrics.queue_consumers.labels(queue).set(counts[1])

    def _forget(self) -> None:
        self._last.clear()
        self.metrics.queue_messages.clear()
        self.metrics.queue_consumers.clear()

    async def close(self) -> None:
        """Stop polling and close the connection."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        if self._connection is not None:
            with contextlib.suppress(Exception):
                await self._connection.close()
