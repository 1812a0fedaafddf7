"""What producers import: publish a v1 request with publisher confirms, get its id.

    async with AsyncClient("amqp://guest:guest@127.0.0.1/") as sms:
        await sms.send(id="login-42", to="+14155550123", body="Your code is 123456", kind="otp")

    with Client(url) as sms:
        sms.send(id="invoice-7", to="+447400123456", body="Your invoice is ready")

The request is validated before publishing: a bad number raises ``InvalidRequest``
here rather than being dead-lettered later. ``url`` may list every node of a cluster,
comma-separated: the client connects to any and moves to a survivor (``smsrelay.brokers``).
"""

from __future__ import annotations

import asyncio
import threading
from types import TracebackType
from typing import Any, Self

import aio_pika
from aio_pika.abc import AbstractRobustConnection

from smsrelay import brokers, publish_time, telemetry
from smsrelay import topology as t
from smsrelay.errors import InvalidRequest
from smsrelay.models import SendRequest, validate_request

__all__ = ["AsyncClient", "Client", "InvalidRequest", "SendRequest"]


class AsyncClient:
    """An asyncio producer on one robust connection.

    ``publish`` keeps trying for up to ``deadline`` seconds through a nack or a lost
    connection (a message may then reach the queue twice: the worker dedupes by id).
    """

    def __init__(
        self, url: str = "amqp://guest:guest@127.0.0.1:5672/", deadline: float = 30.0
    ) -> None:
        self.url = url
        self.deadline = deadline
        self._connection: AbstractRobustConnection | None = None
        self._publisher: brokers.ConfirmedPublisher | None = None

    async def connect(self) -> None:
        """Open the connection and make sure the topology exists."""
        connection = await brokers.connect(self.url)
        self._connection = connection
        # The topology is declared on every channel the publisher opens: a fresh cluster
        # node, or a broker reset, gets it again.
        self._publisher = brokers.ConfirmedPublisher(
            connection,
            t.EXCHANGE,
            deadline=self.deadline,
            on_return_raises=True,
            prepare=t.declare_send_topology,
        )
        try:
            await self._publisher.open()
        except BaseException:
            await self.close()
            raise

    async def send(self, **fields: Any) -> str:
        """Validate and publish one request (keyword names as on the wire: ``from_`` → ``from``)."""
        if "from_" in fields:
            fields["from"] = fields.pop("from_")
        request = validate_request(fields)
        await self.publish(request)
        return request.id

    async def publish(self, request: SendRequest) -> None:
        """Publish an already validated request; returns once the broker confirmed it.

        A ``kind: otp`` request goes to the OTP lane (routing key ``sms.otp``), past any
        bulk backlog; every other kind to ``sms.send``.
        """
        routing_key = t.routing_key_for(request.kind.value)
        await self.publish_raw(request.to_wire(), message_id=request.id, routing_key=routing_key)

    async def publish_raw(
        self, body: bytes, message_id: str | None = None, routing_key: str = t.SEND_ROUTING_KEY
    ) -> None:
        """Publish ``body`` as it is, unvalidated: for tools, demos and tests."""
        if self._publisher is None:
            await self.connect()
        assert self._publisher is not None
        # The publish time, for the worker's publish-to-request histogram.
        headers, timestamp = publish_time.stamp()
        with telemetry.publishing(message_id, t.EXCHANGE, routing_key, headers) as span:
            message = aio_pika.Message(
                body,
                headers=headers,
                content_type="application/json",
                delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
                message_id=message_id,
                timestamp=timestamp,
            )
            if span.is_recording():
                span.set_attribute("messaging.message.body.size", len(body))
            await self._publisher.publish(message, routing_key, mandatory=True)

    async def close(self) -> None:
        """Close the connection."""
        publisher, self._publisher = self._publisher, None
        if publisher is not None:
            await publisher.close()
        if self._connection is not None:
            await self._connection.close()
            self._connection = None

    async def __aenter__(self) -> Self:
        await self.connect()
        return self

    async def __aexit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()


class Client:
    """A blocking producer for code without an event loop (runs one in a thread)."""

    def __init__(
        self, url: str = "amqp://guest:guest@127.0.0.1:5672/", timeout: float = 30.0
    ) -> None:
        self.timeout = timeout
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(
            target=self._loop.run_forever, daemon=True, name="smsrelay-client"
        )
        self._thread.start()
        self._client = AsyncClient(url)

    def _run(self, coro: Any) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(self.timeout)

    def send(self, **fields: Any) -> str:
        """Validate and publish one request; returns its id once confirmed."""
        result: str = self._run(self._client.send(**fields))
        return result

    def close(self) -> None:
        """Close the connection and stop the client's thread."""
        self._run(self._client.close())
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(self.timeout)
        self._loop.close()

    def __enter__(self) -> Self:
        self._run(self._client.connect())
        return self

    def __exit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()
