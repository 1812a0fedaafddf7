"""The API's way to the broker: requests to ``sms`` (through the client), events to ``sms.events``.

The app must start, and answer ``/readyz`` with 503, while the broker is unreachable,
so ``AmqpPublisher.start`` only begins connecting; it keeps trying in the background.
Any failure to publish is raised as ``BrokerUnavailable`` and answered with 503.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable
from typing import Protocol

from smsrelay.amqp import EventsConnection
from smsrelay.client import AsyncClient
from smsrelay.logging import get_logger
from smsrelay.models import SendRequest, StatusEvent

log = get_logger(__name__)


class BrokerUnavailable(Exception):
    """The broker did not confirm a message: not connected, refused, or too slow.

    HTTP-layer only (answered 503); it never reaches the worker's error tree.
    """


class Publisher(Protocol):
    """What the app publishes through; tests pass an in-memory one."""

    @property
    def ready(self) -> bool:
        """True while a connection to the broker is open."""

    async def start(self) -> None:
        """Begin connecting; must not raise when the broker is down."""

    async def publish_request(self, request: SendRequest) -> None:
        """Publish a validated request to ``sms``; raise ``BrokerUnavailable`` on failure."""

    async def publish_event(self, event: StatusEvent) -> None:
        """Publish a status event to ``sms.events``; raise ``BrokerUnavailable`` on failure."""

    async def close(self) -> None:
        """Close connections."""


class AmqpPublisher:
    """``Publisher`` over one long-lived ``AsyncClient`` and an events channel with confirms."""

    def __init__(self, url: str, *, timeout: float = 5.0, reconnect_every: float = 2.0) -> None:
        self.url = url
        self.timeout = timeout
        self.reconnect_every = reconnect_every
        self._client = AsyncClient(url)
        self._events = EventsConnection(url)
        self._task: asyncio.Task[None] | None = None

    @property
    def ready(self) -> bool:
        return self._events.ready

    async def start(self) -> None:
        self._task = asyncio.create_task(self._connect_until_done())

    async def _connect_until_done(self) -> None:
        # Robust connections reconnect by themselves, but only once the first one worked.
        while True:
            try:
                await self._connect()
            except Exception as exc:  # aio-pika raises OSError, AMQP errors, timeouts…
                log.warning("broker_unreachable", error=type(exc).__name__)
                await self._disconnect()
                await asyncio.sleep(self.reconnect_every)
            else:
                log.info("broker_connected")
                return

    async def _connect(self) -> None:
        await self._client.connect()
        await self._events.open()

    async def publish_request(self, request: SendRequest) -> None:
        await self._publish(lambda: self._client.publish(request))

    async def publish_event(self, event: StatusEvent) -> None:
        await self._publish(lambda: self._events.publish(event))

    async def _publish(self, send: Callable[[], Awaitable[None]]) -> None:
        if not self.ready:
            raise BrokerUnavailable("not connected to the broker")
        try:
            async with asyncio.timeout(self.timeout):
                await send()
        except Exception as exc:  # the one place aio-pika's errors become ours
            raise BrokerUnavailable(f"publish failed: {type(exc).__name__}") from exc

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        await self._disconnect()

    async def _disconnect(self) -> None:
        await self._events.close()
        with contextlib.suppress(Exception):
            await self._client.close()
