"""Reading and replaying the dead-letter queue ``sms.dead`` (for ``smsrelay dlq``)."""

from __future__ import annotations

from dataclasses import dataclass

import aio_pika
from aio_pika.abc import AbstractIncomingMessage

from smsrelay import brokers
from smsrelay import topology as t
from smsrelay.models import salvage_id


@dataclass(frozen=True)
class DeadMessage:
    """One dead-lettered request: its id when readable, the reason, its size."""

    id: str | None
    reason: str
    size: int


def _describe(message: AbstractIncomingMessage) -> DeadMessage:
    reason = message.headers.get(t.REASON_HEADER)
    if reason is None:
        death = message.headers.get("x-first-death-reason")
        death = death.decode() if isinstance(death, bytes) else death
        reason = f"dead-lettered by the broker ({death})" if death else "unknown"
    return DeadMessage(
        id=salvage_id(message.body) or message.message_id,
        reason=str(reason.decode() if isinstance(reason, bytes) else reason),
        size=len(message.body),
    )


async def list_dead(url: str, limit: int = 1000) -> list[DeadMessage]:
    """Peek at up to ``limit`` dead letters; they stay in the queue."""
    async with await brokers.connect(url) as connection:
        channel = await connection.channel()
        await t.declare_send_topology(channel)
        queue = await channel.get_queue(t.DEAD_QUEUE)
        found: list[DeadMessage] = []
        while len(found) < limit:
            message = await queue.get(no_ack=False, fail=False)
            if message is None:
                break
            found.append(_describe(message))
        # Closing the channel without acking returns every peeked message.
        await channel.close()
    return found


async def replay(url: str, ids: set[str] | None = None) -> int:
    """Republish dead letters (all, or those with ``ids``) to ``sms``; returns the count."""
    async with await brokers.connect(url) as connection:
        channel = await connection.channel()
        await t.declare_send_topology(channel)
        # Republishing on a channel of its own, past nacks (see smsrelay.brokers).
        publisher = brokers.ConfirmedPublisher(connection, t.EXCHANGE)
        queue = await channel.get_queue(t.DEAD_QUEUE)
        replayed = 0
        while True:
            message = await queue.get(no_ack=False, fail=False)
            if message is None:
                break
            if ids is not None and _describe(message).id not in ids:
                continue
            headers = {k: v for k, v in message.headers.items() if not k.startswith("x-")}
            await publisher.publish(
                aio_pika.Message(
                    message.body,
                    headers=headers,
                    content_type=message.content_type or "application/json",
                    delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
                    message_id=message.message_id,
                ),
                t.SEND_ROUTING_KEY,
            )
            await message.ack()
            replayed += 1
        await publisher.close()
        await channel.close()
    return replayed
