"""One trace from publish to delivery receipt: real broker, real store, a loopback Twilio."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import aio_pika
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.trace import SpanKind

from smsrelay import telemetry
from smsrelay.api.broker import AmqpPublisher
from smsrelay.client import AsyncClient, Client
from smsrelay.runtime import Runtime
from smsrelay.store import SqlStore
from tests.api.support import (
    ACCOUNT_SID,
    TWILIO_TOKEN,
    Api,
    api_settings,
    auth,
    running_api,
    twilio_callback,
)
from tests.conftest import eventually
from tests.fakes.twilio import TwilioFake
from tests.integration.harness import EventLog, drain_dead, event_log, running_worker
from tests.telemetry.conftest import Spans

TO = "+14155550123"


@dataclass
class Relay:
    """A worker and an API on one broker vhost and one database, sending to a fake Twilio."""

    api: Api
    worker: Runtime
    events: EventLog
    fake: TwilioFake
    amqp_url: str


@asynccontextmanager
async def relay(amqp_url: str, database_url: str) -> AsyncIterator[Relay]:
    """Everything started; stopped on exit."""
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
            running_worker(amqp_url, database_url, **overrides) as worker,
        ):
            store = SqlStore.from_url(database_url)
            publisher = AmqpPublisher(amqp_url)
            settings = api_settings(database_url, amqp_url, **overrides)
            try:
                async with running_api(settings, store, publisher) as api:
                    await eventually(lambda: publisher.ready)
                    yield Relay(api, worker, events, fake, amqp_url)
            finally:
                await store.close()


def parent_of(span: ReadableSpan) -> int | None:
    """The span id of ``span``'s parent (None for a root)."""
    return span.parent.span_id if span.parent else None


def one(spans: list[ReadableSpan]) -> ReadableSpan:
    """The single span of a list."""
    assert len(spans) == 1, [s.name for s in spans]
    return spans[0]


async def sent(relay: Relay, message_id: str) -> str:
    """Wait for ``message_id`` to be sent; its provider message id."""
    await eventually(lambda: "sent" in relay.events.states(message_id), seconds=60)
    record = await relay.api.store.get(message_id)
    assert record is not None and record.provider_message_id
    return record.provider_message_id


async def test_publish_to_receipt_is_one_linked_trace(
    spans: Spans, amqp_url: str, pg_url: str
) -> None:
    """Client publish → worker process → dispatch → provider HTTP share one trace, parent by parent; the receipt links to the send."""
    message_id = f"trace-{uuid.uuid4().hex[:8]}"
    async with relay(amqp_url, pg_url) as r:
        async with AsyncClient(amqp_url) as client:
            await client.send(id=message_id, to=TO, body="hello")
        pmid = await sent(r, message_id)
        answer = await r.api.client.post(
            "/v1/receipts/twilio",
            content=twilio_callback(pmid)[0],
            headers=twilio_callback(pmid)[1],
        )
        assert answer.status_code == 204
        await spans.wait("process sms", "messaging.message.id", message_id)
    publish = one(spans.of("publish sms", "messaging.message.id", message_id))
    process = one(spans.of("process sms", "messaging.message.id", message_id))
    dispatch = one(spans.of("smsrelay.dispatch", "smsrelay.message.id", message_id))
    http = one([s for s in spans.named("POST") if s.context.trace_id == publish.context.trace_id])
    receipt = one(spans.named("POST /v1/receipts/{provider}"))

    assert {s.context.trace_id for s in (publish, process, dispatch, http)} == {
        publish.context.trace_id
    }
    assert publish.parent is None and publish.kind is SpanKind.PRODUCER
    assert parent_of(process) == publish.context.span_id and process.kind is SpanKind.CONSUMER
    assert parent_of(dispatch) == process.context.span_id
    assert parent_of(http) == dispatch.context.span_id and http.kind is SpanKind.CLIENT

    assert publish.attributes is not None and process.attributes is not None
    for attributes in (publish.attributes, process.attributes):
        assert attributes["messaging.system"] == "rabbitmq"
        assert attributes["messaging.destination.name"] == "sms"
    assert publish.attributes["messaging.rabbitmq.destination.routing_key"] == "sms.send"
    assert publish.attributes["messaging.operation.type"] == "send"
    assert process.attributes["messaging.operation.type"] == "process"
    assert dispatch.attributes is not None
    assert dispatch.attributes["smsrelay.route"] == ("twilio",)
    assert dispatch.attributes["smsrelay.state"] == "sent"
    assert http.attributes is not None and http.attributes["http.response.status_code"] == 201
    assert http.attributes["smsrelay.provider"] == "twilio"
    assert "?" not in str(http.attributes["url.full"])

    assert receipt.kind is SpanKind.SERVER and receipt.context.trace_id != publish.context.trace_id
    assert [(link.context.trace_id, link.context.span_id) for link in receipt.links] == [
        (dispatch.context.trace_id, dispatch.context.span_id)
    ]
    assert receipt.links[0].attributes == {"smsrelay.message.id": message_id}
    # The provider is a third party: it is not sent our trace context.
    assert "traceparent" not in {k.lower() for k in r.fake.received[0].headers}


async def test_api_request_continues_the_callers_trace_to_the_provider(
    spans: Spans, amqp_url: str, sqlite_url: str
) -> None:
    """POST /v1/messages with a traceparent: server span → publish → process → dispatch → HTTP, all in the caller's trace."""
    message_id = f"api-{uuid.uuid4().hex[:8]}"
    caller = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
    async with relay(amqp_url, sqlite_url) as r:
        answer = await r.api.client.post(
            "/v1/messages",
            json={"id": message_id, "to": TO, "body": "hello"},
            headers={**auth(), "traceparent": caller},
        )
        assert answer.status_code == 202
        await sent(r, message_id)
        await spans.wait("process sms", "messaging.message.id", message_id)
    server = one(spans.named("POST /v1/messages"))
    publish = one(spans.of("publish sms", "messaging.message.id", message_id))
    process = one(spans.of("process sms", "messaging.message.id", message_id))
    dispatch = one(spans.of("smsrelay.dispatch", "smsrelay.message.id", message_id))
    http = one(spans.named("POST"))
    assert {s.context.trace_id for s in (server, publish, process, dispatch, http)} == {
        0x0AF7651916CD43DD8448EB211C80319C
    }
    assert parent_of(server) == 0xB7AD6B7169203331
    assert parent_of(publish) == server.context.span_id
    assert parent_of(process) == publish.context.span_id
    assert parent_of(http) == dispatch.context.span_id
    assert server.attributes is not None and server.attributes["http.response.status_code"] == 202


async def test_retry_rounds_and_dead_letters_stay_in_the_trace(
    spans: Spans, amqp_url: str, sqlite_url: str
) -> None:
    """A retried message's next round is a child of the round before; a dead letter carries the trace."""
    message_id = f"retry-{uuid.uuid4().hex[:8]}"
    async with relay(amqp_url, sqlite_url) as r:
        r.fake.fail(TO, status=503, code=20500)
        async with AsyncClient(amqp_url) as client:
            await client.send(id=message_id, to=TO, body="hello")
            await eventually(lambda: "accepted" in r.events.states(message_id), seconds=60)
            r.fake.failures.clear()
            await sent(r, message_id)
            await client.publish_raw(b'{"id": "bad-1", "to": "not a number"}', message_id="bad-1")
            await spans.wait("process sms", "messaging.message.id", "bad-1")
        dead = await drain_dead(amqp_url)
        await spans.wait("process sms", "messaging.message.id", message_id, count=2)
    first, second = sorted(
        spans.of("process sms", "messaging.message.id", message_id), key=lambda s: s.start_time or 0
    )
    publish = one(spans.of("publish sms", "messaging.message.id", message_id))
    assert first.context.trace_id == second.context.trace_id == publish.context.trace_id
    assert parent_of(first) == publish.context.span_id
    assert parent_of(second) == first.context.span_id
    assert second.attributes is not None and second.attributes["smsrelay.retry_round"] == 1

    rejected = one(spans.of("process sms", "messaging.message.id", "bad-1"))
    assert len(dead) == 1 and dead[0].headers is not None
    traceparent = dead[0].headers["traceparent"]
    assert isinstance(traceparent, str)
    assert traceparent.split("-")[1:3] == [
        f"{rejected.context.trace_id:032x}",
        f"{rejected.context.span_id:016x}",
    ]
    assert json.loads(dead[0].body)["id"] == "bad-1"


async def test_a_junk_traceparent_header_starts_a_trace_of_its_own(
    spans: Spans, amqp_url: str, sqlite_url: str
) -> None:
    """A request whose traceparent header is 32 kB of junk is sent as usual, its processing a new root span."""
    message_id = f"junk-{uuid.uuid4().hex[:8]}"
    body = json.dumps({"id": message_id, "to": TO, "body": "hello"}).encode()
    async with relay(amqp_url, sqlite_url) as r:
        async with await aio_pika.connect(amqp_url) as connection:
            channel = await connection.channel(publisher_confirms=True)
            exchange = await channel.get_exchange("sms")
            headers = {"traceparent": "00-" + "f" * 32_768, "tracestate": "k=" + "v" * 32_768}
            message = aio_pika.Message(body, headers=headers, message_id=message_id)
            await exchange.publish(message, routing_key="sms.send")
        await sent(r, message_id)
        await spans.wait("process sms", "messaging.message.id", message_id)
    process = one(spans.of("process sms", "messaging.message.id", message_id))
    assert process.parent is None


async def test_the_blocking_client_publishes_in_the_callers_trace(
    spans: Spans, amqp_url: str
) -> None:
    """Client.send called inside an application span: the publish span is its child, and the message carries its traceparent."""
    message_id = f"sync-{uuid.uuid4().hex[:8]}"

    def send() -> tuple[int, int]:
        with telemetry.tracer.start_as_current_span("application") as app, Client(amqp_url) as sms:
            sms.send(id=message_id, to=TO, body="hello")
            return app.get_span_context().trace_id, app.get_span_context().span_id

    trace_id, app_span = await asyncio.to_thread(send)
    publish = one(spans.of("publish sms", "messaging.message.id", message_id))
    assert publish.context.trace_id == trace_id and parent_of(publish) == app_span
    async with await aio_pika.connect(amqp_url) as connection:
        channel = await connection.channel()
        queue = await channel.declare_queue("sms.send", passive=True)
        message = await queue.get(no_ack=True, fail=False)
    assert message is not None and message.headers is not None
    traceparent = message.headers["traceparent"]
    assert isinstance(traceparent, str)
    assert traceparent.split("-")[:3] == [
        "00",
        f"{trace_id:032x}",
        f"{publish.context.span_id:016x}",
    ]
