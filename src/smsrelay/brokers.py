"""Several broker nodes behind one setting: connect to any, move to a survivor, publish past nacks.

``amqp_url`` may name every node of a RabbitMQ cluster, comma-separated
(``amqp://u:p@rmq1/,amqp://u:p@rmq2/``; a comma inside a password is written ``%2C``).
The worker, the API, the client library and ``smsrelay dlq`` all connect through
``connect``: the first reachable node, starting at a random one so that processes spread
over the cluster, and on every reconnection the next node in turn, so that a process whose
node died lands on a survivor (aio-pika's robust connection alone retries its one URL).

``ConfirmedPublisher`` is how they publish. On RabbitMQ 3.10, a channel opened on a
survivor just after a quorum queue's leader died gets ``basic.nack`` for every publish,
for as long as it lives (measured: 54k to 230k nacks over minutes, on 10 of 10 runs).
A fresh channel a moment later publishes fine, so after a nack the publisher drops its
channel, waits, and publishes again on a new one; the same after a dropped connection,
once the connection is back. A message republished after a nack or a lost confirm may
reach the queue twice: the worker's dedupe by id makes that harmless.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
from collections.abc import Awaitable, Callable
from typing import Annotated, Any

import aio_pika
import aiormq
from aio_pika.abc import AbstractChannel, AbstractExchange, AbstractRobustConnection
from aio_pika.exceptions import DeliveryError, PublishError
from pamqp.commands import Basic
from pydantic import BeforeValidator
from yarl import URL

from smsrelay.logging import get_logger

log = get_logger(__name__)

# Between reconnection attempts: short, since the next attempt goes to another node.
RECONNECT_INTERVAL = 1.0
# After a nack, before the next channel: RabbitMQ needs a moment to settle the new leader.
PAUSE_AFTER_NACK = 0.3


def parse_urls(value: str | list[str] | tuple[str, ...]) -> tuple[str, ...]:
    """``"a,b"`` or ``["a", "b"]`` → ``("a", "b")``; one URL stays one URL."""
    items = value.split(",") if isinstance(value, str) else list(value)
    urls = tuple(item.strip() for item in items if item.strip())
    if not urls:
        raise ValueError("no broker URL given")
    for url in urls:
        if URL(url).scheme not in ("amqp", "amqps"):
            raise ValueError("a broker URL must start with amqp:// or amqps://")
    return urls


def _setting(value: Any) -> Any:
    if isinstance(value, list | tuple):
        value = ",".join(str(item) for item in value)
    if isinstance(value, str):
        parse_urls(value)  # a ValueError names no URL: it may hold a password
    return value


# The ``amqp_url`` setting: one URL, a comma-separated list, or a YAML/JSON list (joined).
BrokerUrls = Annotated[str, BeforeValidator(_setting)]


def redact(url: str) -> str:
    """The URL without its password, for logs."""
    parsed = URL(url)
    return str(parsed.with_password("******")) if parsed.password else str(parsed)


class RotatingConnection(aio_pika.RobustConnection):
    """A robust connection that moves to the next node on every reconnection attempt.

    aio-pika's reconnection loop connects to ``self.url`` and begins every attempt by
    clearing ``self.transport``: that is where the next URL is taken.
    """

    def __init__(self, urls: tuple[URL, ...], start: int, **kwargs: Any) -> None:
        self._urls = urls
        self._index = start
        self._clears = 0
        super().__init__(urls[start], **kwargs)

    @property
    def url(self) -> URL:
        return self._urls[self._index]

    @url.setter
    def url(self, value: URL) -> None:
        # Set by Connection.__init__ (and update_secret): the list keeps the new value.
        self._urls = tuple(value if i == self._index else u for i, u in enumerate(self._urls))

    @property
    def transport(self) -> Any:
        return self.__dict__.get("_transport")

    @transport.setter
    def transport(self, value: Any) -> None:
        if value is None:
            # Cleared by __init__, then at the start of every connection attempt: from
            # the second attempt on (a reconnection, or a retry), the next node.
            self._clears += 1
            # close() clears it too (with _close_in_progress set): no next node then.
            closing = getattr(self, "_close_in_progress", False)
            if self._clears > 2 and len(self._urls) > 1 and not closing:
                self._index = (self._index + 1) % len(self._urls)
                log.info("broker_next_node", url=redact(str(self.url)))
        self.__dict__["_transport"] = value


async def connect(
    urls: str | list[str] | tuple[str, ...], *, connect_timeout: float | None = 10.0
) -> AbstractRobustConnection:
    """A robust connection to the first node that answers, trying each once.

    Raises the last node's error when none answers. Once connected, it reconnects by
    itself, going round the nodes.
    """
    parsed = tuple(URL(url) for url in parse_urls(urls))
    start = random.randrange(len(parsed))
    error: BaseException | None = None
    for step in range(len(parsed)):
        index = (start + step) % len(parsed)
        connection = RotatingConnection(
            parsed, index, reconnect_interval=RECONNECT_INTERVAL, fail_fast=True
        )
        try:
            await connection.connect(timeout=connect_timeout)
        except Exception as exc:  # OSError, AMQP errors, timeouts: try the next node
            error = exc
            with contextlib.suppress(Exception):
                await connection.close()
            continue
        return connection
    assert error is not None
    raise error


class ConfirmedPublisher:
    """Publishes with publisher confirms on a channel of its own; past nacks and reconnections.

    ``exchange`` names the exchange to publish to ("" for the default one); the channel
    holds nothing else, so dropping it after a nack costs nothing (never the channel a
    consumer's unacked deliveries live on). ``publish`` keeps trying until ``deadline``
    seconds have passed, then raises the last error; a returned (unroutable) message is
    raised at once, as trying again would not route it.
    """

    def __init__(
        self,
        connection: AbstractRobustConnection,
        exchange: str,
        *,
        deadline: float = 30.0,
        on_return_raises: bool = False,
        prepare: Callable[[AbstractChannel], Awaitable[Any]] | None = None,
    ) -> None:
        self.connection = connection
        self.exchange_name = exchange
        self.deadline = deadline
        self.on_return_raises = on_return_raises
        self.prepare = prepare
        self.nacks = 0
        self._channel: AbstractChannel | None = None
        self._exchange: AbstractExchange | None = None
        # The channel's aiormq channel, for ``publish_body`` (no aio-pika message per publish).
        self._raw: aiormq.Channel | None = None
        self._lock = asyncio.Lock()

    async def _current(self) -> AbstractExchange:
        async with self._lock:
            if self._exchange is None or self._channel is None or self._channel.is_closed:
                await self.connection.connected.wait()
                channel = await self.connection.channel(
                    publisher_confirms=True, on_return_raises=self.on_return_raises
                )
                try:
                    if self.prepare is not None:
                        await self.prepare(channel)
                    if self.exchange_name:
                        exchange = await channel.get_exchange(self.exchange_name, ensure=False)
                    else:
                        exchange = channel.default_exchange
                    underlay = await channel.get_underlay_channel()
                    # aiormq's own channel takes ``wait``; any other is published to as aio-pika's.
                    raw = underlay if isinstance(underlay, aiormq.Channel) else None
                except BaseException:
                    with contextlib.suppress(Exception):
                        await channel.close()
                    raise
                self._channel, self._exchange, self._raw = channel, exchange, raw
            return self._exchange

    async def _drop(self, channel: AbstractChannel | None) -> None:
        async with self._lock:
            if channel is not None and channel is self._channel:
                self._channel, self._exchange, self._raw = None, None, None
        if channel is not None:
            with contextlib.suppress(Exception):
                await channel.close()

    async def open(self) -> None:
        """Open the channel now (otherwise the first publish does)."""
        await self._current()

    async def publish(
        self, message: aio_pika.Message, routing_key: str, *, mandatory: bool = False
    ) -> None:
        """Publish ``message``; returns once a broker node confirmed it."""
        try:
            async with asyncio.timeout(self.deadline):
                await self._publish(message, routing_key, mandatory)
        except TimeoutError:
            raise TimeoutError(f"no broker confirmed the message in {self.deadline} s") from None

    async def publish_body(
        self, body: bytes, routing_key: str, properties: Basic.Properties
    ) -> None:
        """``publish`` (not mandatory) of a body and ready-made properties; returns once confirmed.

        The hot path's way: straight to the aiormq channel, without an aio-pika message,
        its checks and the wait for the socket to drain (the confirm is the wait that
        matters). Past nacks and reconnections, within ``deadline``, as ``publish``.
        """
        try:
            async with asyncio.timeout(self.deadline):
                raw = self._raw
                if raw is not None and not raw.is_closed:
                    try:
                        await raw.basic_publish(
                            body,
                            exchange=self.exchange_name,
                            routing_key=routing_key,
                            properties=properties,
                            wait=False,
                        )
                        return
                    except DeliveryError:
                        # A nacked channel stays nacked: a new one, after a pause.
                        await self._nacked(self._channel)
                    except Exception:  # the channel or connection went: as ``publish``
                        pass
                message = aio_pika.Message(
                    body,
                    content_type=properties.content_type,
                    delivery_mode=properties.delivery_mode,
                    message_id=properties.message_id,
                )
                await self._publish(message, routing_key, False)
        except TimeoutError:
            raise TimeoutError(f"no broker confirmed the message in {self.deadline} s") from None

    async def _nacked(self, channel: AbstractChannel | None) -> None:
        self.nacks += 1
        if self.nacks == 1 or self.nacks % 1000 == 0:
            log.warning("broker_nack", nacks=self.nacks)
        await self._drop(channel)
        await asyncio.sleep(PAUSE_AFTER_NACK)

    async def _publish(self, message: aio_pika.Message, routing_key: str, mandatory: bool) -> None:
        while True:
            channel = self._channel
            try:
                exchange = await self._current()
                channel = self._channel
                await exchange.publish(message, routing_key=routing_key, mandatory=mandatory)
                return
            except PublishError:
                raise
            except DeliveryError:
                # A nacked channel stays nacked: a new one, after a pause.
                await self._nacked(channel)
            except Exception as exc:  # the connection or channel went away mid-publish
                await self._drop(channel)
                if self.connection.is_closed:
                    raise
                log.info("publish_retry", error=type(exc).__name__)
                await asyncio.sleep(0.2)

    async def close(self) -> None:
        """Close the publisher's channel (not the connection)."""
        await self._drop(self._channel)
