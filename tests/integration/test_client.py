"""The producer client: validation before publishing, confirmed publishes, both flavours."""

from __future__ import annotations

import asyncio
import json

import aio_pika
import pytest

from smsrelay.client import AsyncClient, Client
from smsrelay.errors import InvalidRequest


async def _queued(amqp_url: str) -> list[dict[str, object]]:
    async with await aio_pika.connect(amqp_url) as connection:
        channel = await connection.channel()
        queue = await channel.declare_queue("sms.send", passive=True)
        out = []
        while (message := await queue.get(no_ack=True, fail=False)) is not None:
            assert message.content_type == "application/json"
            assert message.delivery_mode == aio_pika.DeliveryMode.PERSISTENT
            out.append(json.loads(message.body))
        return out


async def test_async_client_publishes_a_normalised_request(amqp_url: str) -> None:
    """The async client declares the topology, publishes with confirms and returns the id."""
    async with AsyncClient(amqp_url) as client:
        returned = await client.send(
            id="a-1", to="07911 123456", region="GB", body="hi", from_="Acme"
        )
    assert returned == "a-1"
    [queued] = await _queued(amqp_url)
    assert queued["to"] == "+447911123456" and queued["from"] == "Acme" and "region" not in queued


async def test_async_client_refuses_an_invalid_request_before_publishing(amqp_url: str) -> None:
    """A bad number raises InvalidRequest in the producer and nothing is published."""
    async with AsyncClient(amqp_url) as client:
        with pytest.raises(InvalidRequest, match='field "to": not a valid phone number'):
            await client.send(id="a-2", to="+1415", body="hi")
    assert await _queued(amqp_url) == []


async def test_sync_client_publishes_and_returns_the_id(amqp_url: str) -> None:
    """The blocking client works from code without an event loop."""

    def produce() -> str:
        with Client(amqp_url) as client:
            with pytest.raises(InvalidRequest):
                client.send(id="s-0", to="+14155550123", body="")
            return client.send(id="s-1", to="+14155550123", body="hello")

    assert await asyncio.to_thread(produce) == "s-1"
    assert [m["id"] for m in await _queued(amqp_url)] == ["s-1"]
