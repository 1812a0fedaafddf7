"""The publish-to-request and send-to-receipt histograms, scraped from a real worker and API."""

from __future__ import annotations

import json
import time
import uuid
from datetime import UTC, datetime
from typing import Any

import aio_pika
import httpx

from smsrelay.api.broker import AmqpPublisher
from smsrelay.client import AsyncClient
from smsrelay.publish_time import MAX_AGE, published_at
from smsrelay.store import SqlStore
from tests.api.support import ACCOUNT_SID, TWILIO_TOKEN, api_settings, running_api, twilio_callback
from tests.conftest import eventually
from tests.fakes.twilio import TwilioFake
from tests.integration.harness import event_log, running_worker
from tests.ops.support import metric

WAIT = "smsrelay_publish_to_request_seconds"
RECEIPT = "smsrelay_send_to_receipt_seconds"
# One number per destination country, so that each message has its own series.
NUMBERS = {
    "US": "+14155550123",
    "GB": "+442079460958",
    "DE": "+4915123456789",
    "FR": "+33612345678",
}


async def publish(
    amqp_url: str, to: str, headers: dict[str, Any] | None = None, timestamp: datetime | None = None
) -> None:
    """One request published as a third-party producer would, with the given publish time."""
    body = json.dumps({"id": f"lat-{uuid.uuid4().hex[:8]}", "to": to, "body": "hi"}).encode()
    async with await aio_pika.connect(amqp_url) as connection:
        channel = await connection.channel(publisher_confirms=True)
        exchange = await channel.get_exchange("sms")
        message = aio_pika.Message(body, headers=headers, timestamp=timestamp)
        await exchange.publish(message, routing_key="sms.send")


async def test_publish_to_request_counts_from_the_messages_publish_time(
    amqp_url: str, sqlite_url: str
) -> None:
    """Header 5 s old, property 5 s old, header in the future (skew: 0), none (receive time): each lands in its bucket of /metrics."""
    async with running_worker(amqp_url, sqlite_url) as worker:
        ops = await worker.serve_ops(port=0)
        scrape = f"http://127.0.0.1:{ops.port}/metrics"
        five_ago = time.time() - 5
        await publish(amqp_url, NUMBERS["US"], headers={"timestamp_in_ms": int(five_ago * 1000)})
        await publish(amqp_url, NUMBERS["GB"], timestamp=datetime.fromtimestamp(five_ago, UTC))
        ahead = int((time.time() + 3600) * 1000)
        await publish(amqp_url, NUMBERS["DE"], headers={"timestamp_in_ms": ahead})
        await publish(amqp_url, NUMBERS["FR"])
        async with httpx.AsyncClient() as http:

            async def text() -> str:
                return (await http.get(scrape)).text

            async def all_counted() -> bool:
                page = await text()
                return all(
                    metric(page, f"{WAIT}_count", country=c, provider="simulator") == 1
                    for c in NUMBERS
                )

            await eventually(all_counted, seconds=60)
            page = await text()

    def bucket(country: str, le: str) -> float | None:
        return metric(page, f"{WAIT}_bucket", country=country, le=le, provider="simulator")

    for country in ("US", "GB"):  # waited 5 s and a little more
        assert bucket(country, "2.5") == 0 and bucket(country, "10.0") == 1, country
    assert bucket("DE", "0.01") == 1  # a publisher's clock ahead: 0, not negative
    assert bucket("FR", "2.5") == 1  # no publish time: from its arrival at the worker


def test_a_publish_time_from_the_wire_is_believed_only_when_plausible() -> None:
    """Not a number, a bool, or older than MAX_AGE: the receive time is used instead."""
    now = time.time()
    for junk in ("1700000000000", True, None, [1], int((now - MAX_AGE - 60) * 1000)):
        assert published_at({"timestamp_in_ms": junk}, None) >= now, junk
    assert abs(published_at({"timestamp_in_ms": int(now * 1000) - 2000}, None) - (now - 2)) < 0.01
    assert abs(published_at(None, datetime.fromtimestamp(now - 3, UTC)) - (now - 3)) < 0.01


async def test_a_receipt_settling_a_send_is_counted_from_the_sends_time(
    amqp_url: str, sqlite_url: str
) -> None:
    """A worker sends to a loopback Twilio, its signed receipt reaches the API: /metrics counts one send-to-receipt per provider x country."""
    message_id = f"rcpt-{uuid.uuid4().hex[:8]}"
    async with TwilioFake(account_sid=ACCOUNT_SID, auth_token=TWILIO_TOKEN) as fake:
        providers = {
            "twilio": {
                "type": "twilio",
                "base_url": fake.url,
                "account_sid": ACCOUNT_SID,
                "auth_token": TWILIO_TOKEN,
                "sender": "+14155550100",
            }
        }
        overrides: dict[str, Any] = {"providers": providers, "routes": {"*": ["twilio"]}}
        async with (
            event_log(amqp_url) as events,
            running_worker(amqp_url, sqlite_url, **overrides),
        ):
            store = SqlStore.from_url(sqlite_url)
            publisher = AmqpPublisher(amqp_url)
            settings = api_settings(sqlite_url, amqp_url, **overrides)
            try:
                async with running_api(settings, store, publisher) as api:
                    async with AsyncClient(amqp_url) as client:
                        await client.send(id=message_id, to=NUMBERS["US"], body="hello")
                    await eventually(lambda: "sent" in events.states(message_id), seconds=60)
                    before = (await api.client.get("/metrics")).text
                    record = await store.get(message_id)
                    assert record is not None and record.provider_message_id
                    body, headers = twilio_callback(record.provider_message_id)
                    answer = await api.client.post(
                        "/v1/receipts/twilio", content=body, headers=headers
                    )
                    assert answer.status_code == 204
                    after = (await api.client.get("/metrics")).text
                    again = await api.client.post(
                        "/v1/receipts/twilio", content=body, headers=headers
                    )
                    assert again.status_code == 403  # a replay settles nothing more
                    final = (await api.client.get("/metrics")).text
            finally:
                await store.close()
    labels = {"country": "US", "provider": "twilio"}
    assert metric(before, f"{RECEIPT}_count", **labels) is None
    assert metric(after, f"{RECEIPT}_count", **labels) == 1
    assert metric(after, f"{RECEIPT}_bucket", le="+Inf", **labels) == 1
    seconds = metric(after, f"{RECEIPT}_sum", **labels)
    assert seconds is not None and 0 <= seconds < 60
    assert metric(final, f"{RECEIPT}_count", **labels) == 1
