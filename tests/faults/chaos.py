"""What every fault-injection scenario shares: load, an event ledger that survives broker
restarts, the worker's provider settings, and the verdict (lost, unflagged duplicates).

The two properties every scenario proves, whatever it breaks:

- **0 lost**: every id ends with a terminal record (sent, failed, expired) and a terminal
  event;
- **0 unflagged duplicates**: an id the provider may have taken more than once (requests
  it received, less those it refused) is flagged ``possible_duplicate`` in its record.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections import Counter
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import aio_pika
from aio_pika.abc import AbstractIncomingMessage
from sqlalchemy import text

from smsrelay.amqp import declare_events_exchange, declare_send_topology
from smsrelay.store import SqlStore
from tests.fakes.faulty import FaultyTwilio, body_for
from tests.private_broker import PrivateBroker

TERMINAL = {"sent", "failed", "expired", "delivered", "undelivered"}
EVENTS_QUEUE = "test.fault-events"
NUMBERS = [f"+1415555{n:04d}" for n in range(200, 260)]


def twilio_worker_settings(fake: FaultyTwilio, **extra: Any) -> dict[str, Any]:
    """Worker settings sending everything through the twilio adapter to ``fake``."""
    settings: dict[str, Any] = {
        "providers": {
            "twilio": {
                "type": "twilio",
                "account_sid": fake.account_sid,
                "auth_token": fake.auth_token,
                "sender": "+14155550100",
                "base_url": fake.url,
                "timeout": 5,
            }
        },
        "routes": {"*": ["twilio"]},
        "retry": {"max_attempts": 20, "delays": [0.2, 0.5], "jitter": 0.0},
    }
    settings.update(extra)
    return settings


def requests(prefix: str, count: int) -> dict[str, bytes]:
    """``count`` valid requests, id → body, whose bodies carry their ids for the fake."""
    out = {}
    for i in range(count):
        mid = f"{prefix}-{i}"
        body = {"id": mid, "to": NUMBERS[i % len(NUMBERS)], "body": body_for(mid)}
        out[mid] = json.dumps(body).encode()
    return out


async def publish(amqp_url: str, bodies: list[bytes]) -> None:
    """Publish persistent, confirmed requests to ``sms``."""
    async with await aio_pika.connect(amqp_url) as connection:
        channel = await connection.channel(publisher_confirms=True)
        exchange = await declare_send_topology(channel)
        for body in bodies:
            await exchange.publish(
                aio_pika.Message(body, delivery_mode=aio_pika.DeliveryMode.PERSISTENT),
                routing_key="sms.send",
            )


@dataclass
class Ledger:
    """Every status event, from a durable queue: none is missed across broker restarts."""

    events: list[dict[str, Any]] = field(default_factory=list)

    def terminal(self) -> set[str]:
        """Ids with a terminal event."""
        return {e["id"] for e in self.events if e["state"] in TERMINAL}

    async def _on(self, message: AbstractIncomingMessage) -> None:
        async with message.process():
            self.events.append(json.loads(message.body))


@asynccontextmanager
async def ledger(amqp_url: str) -> AsyncIterator[Ledger]:
    """A ``Ledger`` consuming a durable queue bound to ``sms.status.#``."""
    book = Ledger()
    connection = await aio_pika.connect_robust(amqp_url)
    async with connection:
        channel = await connection.channel()
        exchange = await declare_events_exchange(channel)
        queue = await channel.declare_queue(EVENTS_QUEUE, durable=True)
        await queue.bind(exchange, routing_key="sms.status.#")
        await queue.consume(book._on)
        yield book


@dataclass(frozen=True)
class Verdict:
    """What a scenario ended with."""

    records: dict[str, tuple[str, bool]]
    lost: list[str]
    unflagged_duplicates: list[str]
    sends: Counter[str]

    def assert_clean(self) -> None:
        """0 lost, 0 unflagged duplicates."""
        assert not self.lost, f"{len(self.lost)} lost, e.g. {self.lost[:5]}: {self._state()}"
        assert not self.unflagged_duplicates, (
            f"{len(self.unflagged_duplicates)} sent twice unflagged,"
            f" e.g. {self.unflagged_duplicates[:5]}"
        )

    def _state(self) -> dict[str, tuple[str, bool] | None]:
        return {i: self.records.get(i) for i in self.lost[:5]}


async def records(database_url: str) -> dict[str, tuple[str, bool]]:
    """id → (state, possible_duplicate) of every message in the store."""
    store = SqlStore.from_url(database_url)
    try:
        async with store.engine.connect() as conn:
            rows = (
                await conn.execute(text("SELECT id, state, possible_duplicate FROM messages"))
            ).all()
    finally:
        await store.close()
    return {r.id: (r.state, bool(r.possible_duplicate)) for r in rows}


async def settle(
    database_url: str,
    ids: list[str],
    book: Ledger,
    fake: FaultyTwilio,
    broker: PrivateBroker,
    seconds: float = 300,
) -> Verdict:
    """Wait until every id has a terminal record and event, or nothing is left to do; judge.

    "Nothing left" is a positive signal: every queue on the broker (sms.send, the retry
    queues, the ledger's) is empty with nothing unacknowledged, twice in a row. A
    message the worker still holds is unacknowledged, so an empty broker with ids not
    terminal means those ids are lost, not late.
    """
    deadline = time.monotonic() + seconds
    idle_checks = 0
    while True:
        found = await records(database_url)
        verdict = judge(found, book, fake, ids)
        if not verdict.lost or time.monotonic() > deadline:
            return verdict
        idle_checks = idle_checks + 1 if await broker_idle(broker) else 0
        if idle_checks >= 2:
            return judge(await records(database_url), book, fake, ids)
        await asyncio.sleep(0.5)


async def broker_idle(broker: PrivateBroker) -> bool:
    """No message ready or unacknowledged in any queue of the node."""
    depths = await broker.queue_depths()
    return bool(depths) and all(ready == 0 and unacked == 0 for ready, unacked in depths.values())


def judge(
    found: dict[str, tuple[str, bool]], book: Ledger, fake: FaultyTwilio, ids: list[str]
) -> Verdict:
    """Lost ids and unflagged duplicates, from records, events and the provider's count."""
    done = book.terminal()
    lost = [i for i in ids if found.get(i, ("", False))[0] not in TERMINAL or i not in done]
    sends = Counter({i: fake.accepted(i) for i in ids})
    unflagged = [i for i, n in sends.items() if n > 1 and not found.get(i, ("", False))[1]]
    return Verdict(found, lost, unflagged, sends)
