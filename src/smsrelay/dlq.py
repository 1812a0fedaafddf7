"""Reading, dropping and replaying the dead-letter queue ``sms.dead`` (for ``smsrelay dlq``).

Every operation walks the queue once, over the messages present when it starts (so a
replayed message dead-lettered again while we walk is not met twice), and decides for
each: keep it, drop it (ack) or replay it (publish to ``sms`` with a confirm, then
ack). What is kept returns to the queue when the channel closes.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

import aio_pika
from aio_pika.abc import AbstractIncomingMessage

from smsrelay import brokers, publish_time
from smsrelay import topology as t
from smsrelay.errors import InvalidRequest
from smsrelay.models import parse_request, salvage_id
from smsrelay.phone import mask

Action = Literal["keep", "drop", "replay"]


@dataclass(frozen=True)
class DeadMessage:
    """One dead-lettered request: its id when readable, the reason, its size.

    ``refusal`` is why smsrelay would refuse it again today (None: it is valid now, it
    was dead-lettered for another reason, such as a worker crashing on it).
    """

    id: str | None
    reason: str
    size: int
    body: bytes = field(default=b"", repr=False)
    headers: dict[str, Any] = field(default_factory=dict)
    refusal: str | None = None

    def redacted_body(self) -> str:
        """The request for a person to read: the number masked, the text only counted."""
        try:
            data = json.loads(self.body)
        except (ValueError, RecursionError):
            return repr(self.body[:200])
        if not isinstance(data, dict):
            return json.dumps(data)[:200]
        if isinstance(data.get("to"), str):
            data["to"] = mask(data["to"])
        if isinstance(data.get("body"), str):
            data["body"] = f"[{len(data['body'])} characters]"
        return json.dumps(data, ensure_ascii=False)


def _refusal(body: bytes) -> str | None:
    try:
        parse_request(body)
    except InvalidRequest as exc:
        return exc.reason
    return None


def _text(value: Any) -> str:
    return value.decode(errors="replace") if isinstance(value, bytes) else str(value)


def _describe(message: AbstractIncomingMessage) -> DeadMessage:
    reason = message.headers.get(t.REASON_HEADER)
    if reason is None:
        death = message.headers.get("x-first-death-reason")
        reason = f"dead-lettered by the broker ({_text(death)})" if death else "unknown"
    return DeadMessage(
        id=salvage_id(message.body) or message.message_id,
        reason=_text(reason),
        size=len(message.body),
        body=message.body,
        headers={k: _text(v) for k, v in message.headers.items() if isinstance(v, str | bytes)},
        refusal=_refusal(message.body),
    )


async def walk(
    url: str, decide: Callable[[DeadMessage], Action], limit: int | None = None
) -> list[tuple[DeadMessage, Action]]:
    """Meet each dead letter present now (at most ``limit``) and do what ``decide`` says."""
    async with await brokers.connect(url) as connection:
        channel = await connection.channel()
        await t.declare_send_topology(channel)
        # Republishing on a channel of its own, past nacks (see smsrelay.brokers).
        publisher = brokers.ConfirmedPublisher(connection, t.EXCHANGE)
        queue = await channel.declare_queue(t.DEAD_QUEUE, passive=True)
        budget = queue.declaration_result.message_count or 0
        if limit is not None:
            budget = min(budget, limit)
        done: list[tuple[DeadMessage, Action]] = []
        while len(done) < budget:
            message = await queue.get(no_ack=False, fail=False)
            if message is None:
                break
            dead = _describe(message)
            action = decide(dead)
            await _carry_out(action, message, publisher)
            done.append((dead, action))
        await publisher.close()
        # Closing the channel without acking returns every message kept.
        await channel.close()
    return done


async def _carry_out(
    action: Action, message: AbstractIncomingMessage, publisher: brokers.ConfirmedPublisher
) -> None:
    if action == "replay":
        headers = {k: v for k, v in message.headers.items() if not k.startswith("x-")}
        stamped, timestamp = publish_time.stamp()  # a replay is a new publish
        await publisher.publish(
            aio_pika.Message(
                message.body,
                headers={**headers, **stamped},
                content_type=message.content_type or "application/json",
                delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
                message_id=message.message_id,
                timestamp=timestamp,
            ),
            t.SEND_ROUTING_KEY,
        )
    if action in ("replay", "drop"):
        await message.ack()


async def list_dead(url: str, limit: int = 1000) -> list[DeadMessage]:
    """Peek at up to ``limit`` dead letters; they stay in the queue."""
    return [dead for dead, _ in await walk(url, lambda _: "keep", limit)]


async def replay(url: str, ids: set[str] | None = None, *, force: bool = True) -> int:
    """Republish dead letters (all, or those with ``ids``) to ``sms``; returns the count.

    Without ``force``, those smsrelay would refuse again stay in the queue.
    """

    def decide(dead: DeadMessage) -> Action:
        wanted = ids is None or dead.id in ids
        return "replay" if wanted and (force or dead.refusal is None) else "keep"

    return sum(1 for _, action in await walk(url, decide) if action == "replay")


async def drop(url: str, ids: set[str]) -> int:
    """Delete the dead letters with ``ids``; returns the count."""
    return sum(
        1
        for _, action in await walk(url, lambda d: "drop" if d.id in ids else "keep")
        if action == "drop"
    )
