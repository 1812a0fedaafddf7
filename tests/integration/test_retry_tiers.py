"""Retry queues by delay on the real broker: a long delay never holds back a short one (issue 7, item 13)."""

from __future__ import annotations

import json

import aio_pika

from smsrelay import topology
from tests.conftest import eventually
from tests.fakes.faulty import FaultyTwilio
from tests.integration.harness import event_log, request, running_worker

SLOW = "+14155550301"
QUICK = "+14155550302"


def _twilio(fake: FaultyTwilio) -> dict[str, object]:
    return {
        "providers": {
            "twilio": {
                "type": "twilio",
                "account_sid": fake.account_sid,
                "auth_token": fake.auth_token,
                "sender": "+14155550100",
                "base_url": fake.url,
            }
        },
        "routes": {"*": ["twilio"]},
        "retry": {"max_attempts": 5, "delays": [0.3, 60.0], "jitter": 0.0},
    }


async def _ready(amqp_url: str, queue: str) -> int:
    async with await aio_pika.connect(amqp_url) as connection:
        channel = await connection.channel()
        declared = await channel.declare_queue(queue, passive=True)
        return int(declared.declaration_result.message_count or 0)


async def test_long_retry_after_never_holds_back_a_short_retry(
    amqp_url: str, sqlite_url: str
) -> None:
    """A message told `Retry-After: 3600` waits in the longest tier while a 0.3 s retry behind it is sent."""
    async with FaultyTwilio() as fake:
        fake.fail(SLOW, 429, "20429", "Too Many Requests", retry_after=3600)
        fake.fail_first(QUICK, 1)
        async with (
            event_log(amqp_url) as events,
            running_worker(amqp_url, sqlite_url, **_twilio(fake)),
        ):
            async with await aio_pika.connect(amqp_url) as connection:
                channel = await connection.channel(publisher_confirms=True)
                exchange = await channel.get_exchange(topology.EXCHANGE)
                for mid, to in (("slow", SLOW), ("quick", QUICK)):
                    await exchange.publish(
                        aio_pika.Message(request(mid, to=to)), routing_key="sms.send"
                    )
                    await eventually(lambda mid=mid: events.states(mid) == ["accepted"])
            await eventually(lambda: events.states("quick") == ["accepted", "sent"], seconds=30)
            assert events.states("slow") == ["accepted"]
            assert await _ready(amqp_url, "sms.retry.60000ms") == 1


async def test_retry_queues_of_earlier_versions_still_drain(amqp_url: str, sqlite_url: str) -> None:
    """A message parked in a round-numbered queue (sms.retry.1) of an earlier version comes back and is sent."""
    async with await aio_pika.connect(amqp_url) as connection:
        channel = await connection.channel(publisher_confirms=True)
        old = await channel.declare_queue(
            "sms.retry.1",
            durable=True,
            arguments={
                "x-dead-letter-exchange": topology.EXCHANGE,
                "x-dead-letter-routing-key": topology.RETRY_ROUTING_KEY,
            },
        )
        await channel.declare_exchange(topology.EXCHANGE, aio_pika.ExchangeType.TOPIC, durable=True)
        await channel.default_exchange.publish(
            aio_pika.Message(
                json.dumps({"id": "parked", "to": QUICK, "body": "hi"}).encode(),
                headers={topology.ATTEMPT_HEADER: 1},
                expiration=0.5,
            ),
            routing_key=old.name,
        )
    async with event_log(amqp_url) as events, running_worker(amqp_url, sqlite_url):
        await eventually(lambda: events.states("parked") == ["sent"], seconds=30)
