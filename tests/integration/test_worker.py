"""The worker end to end, in process, on the test's own vhost and SQLite file."""

from __future__ import annotations

import uuid
from collections import Counter
from datetime import UTC, datetime, timedelta

import pytest

from smsrelay.client import AsyncClient
from smsrelay.models import State
from tests.conftest import eventually, queue_settled
from tests.fakes.twilio import ACCOUNT_SID, AUTH_TOKEN, TwilioFake
from tests.integration.harness import (
    drain_dead,
    event_log,
    publish_raw,
    request,
    running_worker,
    simulator,
)

TWO_SIMS = {
    "providers": {
        "primary": {"type": "simulator", "transient_failure_numbers": ["+14155550142"]},
        "backup": {"type": "simulator"},
    },
    "routes": {"*": ["primary", "backup"]},
}
ALWAYS_DOWN = {
    "providers": {"down": {"type": "simulator", "failure_rate": 1.0}},
    "routes": {"*": ["down"]},
}


def _id() -> str:
    return f"t-{uuid.uuid4().hex[:10]}"


async def test_published_request_is_sent_once_and_reported(amqp_url: str, sqlite_url: str) -> None:
    """A request published by the client reaches the provider once and ends `sent` with an event."""
    mid = _id()
    async with event_log(amqp_url) as events, running_worker(amqp_url, sqlite_url) as rt:
        async with AsyncClient(amqp_url) as client:
            await client.send(id=mid, to="+14155550123", body="hi", tags={"team": "auth"})
        await eventually(lambda: events.states(mid) == ["sent"])
        sent = simulator(rt, "simulator").sent
        assert [r.id for r in sent] == [mid]
        record = await rt.store.get(mid)
    assert record is not None and record.state is State.SENT
    event = events.of(mid)[0]
    assert event["provider"] == "simulator"
    assert event["provider_message_id"] == record.provider_message_id
    assert event["tags"] == {"team": "auth"} and event["segments"] == 1 and event["attempt"] == 1


async def test_same_id_published_twice_is_sent_once(amqp_url: str, sqlite_url: str) -> None:
    """A producer retrying its publish with the same id does not send the SMS twice."""
    mid = _id()
    async with event_log(amqp_url) as events, running_worker(amqp_url, sqlite_url) as rt:
        await publish_raw(amqp_url, [request(mid), request(mid)])
        await eventually(lambda: events.states(mid) == ["sent"])
        other = _id()
        await publish_raw(amqp_url, [request(mid), request(other)])
        await eventually(lambda: events.states(other) == ["sent"])
        await queue_settled(amqp_url)
        assert [r.id for r in simulator(rt, "simulator").sent] == [mid, other]
    assert rt.metrics.duplicates._value.get() == 2


async def test_expired_request_is_never_sent(amqp_url: str, sqlite_url: str) -> None:
    """A request whose expires_at has passed ends `expired` and never reaches a provider."""
    mid = _id()
    past = (datetime.now(UTC) - timedelta(seconds=1)).isoformat()
    async with event_log(amqp_url) as events, running_worker(amqp_url, sqlite_url) as rt:
        await publish_raw(amqp_url, [request(mid, expires_at=past)])
        await eventually(lambda: events.states(mid) == ["expired"])
        assert simulator(rt, "simulator").sent == []
        record = await rt.store.get(mid)
    assert record is not None and record.state is State.EXPIRED and record.attempts == []


async def test_transient_failure_fails_over_to_next_provider(
    amqp_url: str, sqlite_url: str
) -> None:
    """When the first provider of a route fails transiently, the next one sends."""
    mid = _id()
    async with (
        event_log(amqp_url) as events,
        running_worker(amqp_url, sqlite_url, **TWO_SIMS) as rt,
    ):
        await publish_raw(amqp_url, [request(mid, to="+14155550142")])
        await eventually(lambda: events.states(mid) == ["sent"])
        record = await rt.store.get(mid)
        assert [r.id for r in simulator(rt, "backup").sent] == [mid]
    assert record is not None
    assert [(a.provider, a.outcome) for a in record.attempts] == [
        ("primary", "transient"),
        ("backup", "sent"),
    ]
    assert events.of(mid)[0]["provider"] == "backup" and events.of(mid)[0]["attempt"] == 2


async def test_all_providers_down_retries_later_then_fails(amqp_url: str, sqlite_url: str) -> None:
    """With every provider down, the message is retried via the TTL queues, then ends `failed`."""
    mid = _id()
    async with (
        event_log(amqp_url) as events,
        running_worker(amqp_url, sqlite_url, **ALWAYS_DOWN) as rt,
    ):
        started = datetime.now(UTC)
        await publish_raw(amqp_url, [request(mid)])
        await eventually(lambda: "failed" in events.states(mid))
        record = await rt.store.get(mid)
    assert events.states(mid) == ["accepted", "accepted", "failed"]
    assert record is not None and record.state is State.FAILED
    assert [a.outcome for a in record.attempts] == ["transient"] * 3
    # Two delayed retries of ~0.3 s each happened between the first and last attempt.
    gap = record.attempts[-1].started_at - record.attempts[0].started_at
    assert gap >= timedelta(seconds=0.5)
    assert record.attempts[0].started_at >= started - timedelta(seconds=1)
    assert events.of(mid)[-1]["error"]["retryable"] is True


async def test_retry_stops_at_expires_at(amqp_url: str, sqlite_url: str) -> None:
    """A retry that would land after expires_at is not scheduled: the message ends `expired`."""
    mid = _id()
    soon = (datetime.now(UTC) + timedelta(seconds=0.2)).isoformat()
    overrides = {**ALWAYS_DOWN, "retry": {"max_attempts": 5, "delays": [2.0], "jitter": 0.0}}
    async with event_log(amqp_url) as events, running_worker(amqp_url, sqlite_url, **overrides):
        await publish_raw(amqp_url, [request(mid, expires_at=soon)])
        await eventually(lambda: "expired" in events.states(mid))
    assert events.states(mid) == ["expired"]


MALFORMED: list[tuple[bytes, str]] = [
    (b'{"id": x}', "invalid json at line 1 col 8"),
    (b'["not", "an", "object"]', "request must be a JSON object, got array"),
    (b'{"id": "m1", "body": "hi"}', 'field "to": required'),
    (
        b'{"id": "m2", "to": "+14155550123", "body": "hi", "colour": "red"}',
        'unknown field "colour"',
    ),
    (b'{"id": "m3", "to": "+1415555", "body": "hi"}', 'field "to": not a valid phone number'),
    (
        b'{"id": "m4", "to": "+14155550123", "body": "' + b"x" * 10_000_000 + b'"}',
        "bytes, the limit is",
    ),
    (b'{"id": "m5", "to": "+14155550123", "body": "\xff\xfe"}', "not valid UTF-8"),
    (b"", "invalid json at line 1 col 1"),
]


async def test_malformed_requests_are_dead_lettered_with_reason(
    amqp_url: str, sqlite_url: str
) -> None:
    """Each malformed request lands in sms.dead, body intact, with x-smsrelay-reason; good ones still go."""
    good = _id()
    async with event_log(amqp_url) as events, running_worker(amqp_url, sqlite_url) as rt:
        await publish_raw(amqp_url, [body for body, _ in MALFORMED] + [request(good)])
        await eventually(lambda: events.states(good) == ["sent"])
        await eventually(lambda: len(events.events) >= 1 + 3)
        rejected = await rt.store.rejections()
    dead = await drain_dead(amqp_url)
    assert len(dead) == len(MALFORMED)
    by_body = {m.body: str(m.headers["x-smsrelay-reason"]) for m in dead}
    for body, reason in MALFORMED:
        assert reason in by_body[body], (by_body[body], reason)
    assert len(rejected) == len(MALFORMED)
    assert Counter(e["state"] for e in events.events) == Counter({"sent": 1, "rejected": 3})


async def test_routing_key_suffix_routes_the_same(amqp_url: str, sqlite_url: str) -> None:
    """`sms.send.<suffix>` routing keys reach the worker like `sms.send`."""
    mid = _id()
    async with event_log(amqp_url) as events, running_worker(amqp_url, sqlite_url):
        await publish_raw(amqp_url, [request(mid)], routing_key="sms.send.billing")
        await eventually(lambda: events.states(mid) == ["sent"])


@pytest.mark.parametrize("count", [300])
async def test_many_requests_are_sent_concurrently(
    amqp_url: str, sqlite_url: str, count: int
) -> None:
    """With 100 ms provider latency, many of 300 messages are at the provider at once, not one at a time."""
    overrides = {
        "providers": {"slow": {"type": "simulator", "latency_ms": 100}},
        "routes": {"*": ["slow"]},
    }
    ids = [_id() for _ in range(count)]
    async with (
        event_log(amqp_url) as events,
        running_worker(amqp_url, sqlite_url, **overrides) as rt,
    ):
        await publish_raw(amqp_url, [request(i) for i in ids])
        await eventually(lambda: len(events.events) == count, seconds=60)
        provider = simulator(rt, "slow")
        assert sorted(r.id for r in provider.sent) == sorted(ids)
    # Counted at the provider, not timed: a loaded machine slows both, not the overlap.
    assert provider.peak_in_flight >= 20, provider.peak_in_flight


async def test_twilio_route_sends_once_through_the_wire_format(
    amqp_url: str, sqlite_url: str
) -> None:
    """A request routed to Twilio reaches the Twilio fake exactly once, as a form POST, and ends `sent`."""
    mid = _id()
    async with TwilioFake() as fake:
        overrides = {
            "providers": {
                "twilio": {
                    "type": "twilio",
                    "base_url": fake.url,
                    "account_sid": ACCOUNT_SID,
                    "auth_token": AUTH_TOKEN,
                    "sender": "+14155550100",
                }
            },
            "routes": {"*": ["twilio"]},
        }
        async with event_log(amqp_url) as events, running_worker(amqp_url, sqlite_url, **overrides):
            await publish_raw(amqp_url, [request(mid), request(mid)])
            await eventually(lambda: events.states(mid) == ["sent"])
            await queue_settled(amqp_url)
        assert len(fake.received) == 1
        form = fake.received[0].form
    assert form["To"] == "+14155550123" and form["Body"] == f"hello {mid}"
    assert events.of(mid)[0]["provider_message_id"].startswith("SM")


async def test_twilio_outage_fails_over_to_simulator(amqp_url: str, sqlite_url: str) -> None:
    """A Twilio 503 sends the message through the next provider in the route."""
    mid = _id()
    async with TwilioFake() as fake:
        fake.fail("+14155550123", 503, 20500, "Service unavailable")
        overrides = {
            "providers": {
                "twilio": {
                    "type": "twilio",
                    "base_url": fake.url,
                    "account_sid": ACCOUNT_SID,
                    "auth_token": AUTH_TOKEN,
                    "sender": "+14155550100",
                },
                "simulator": {"type": "simulator"},
            },
            "routes": {"US": ["twilio", "simulator"], "*": ["simulator"]},
        }
        async with event_log(amqp_url) as events, running_worker(amqp_url, sqlite_url, **overrides):
            await publish_raw(amqp_url, [request(mid)])
            await eventually(lambda: events.states(mid) == ["sent"])
        assert len(fake.received) == 1
    assert events.of(mid)[0]["provider"] == "simulator"


async def test_worker_on_postgresql_sends_and_dedupes(amqp_url: str, pg_url: str) -> None:
    """The same worker code runs on PostgreSQL: sent once, duplicate id acked, record readable."""
    mid = _id()
    async with event_log(amqp_url) as events, running_worker(amqp_url, pg_url) as rt:
        await publish_raw(amqp_url, [request(mid), request(mid)])
        await eventually(lambda: events.states(mid) == ["sent"])
        await queue_settled(amqp_url)
        record = await rt.store.get(mid)
        assert [r.id for r in simulator(rt, "simulator").sent] == [mid]
    assert record is not None and record.state is State.SENT
    assert [a.outcome for a in record.attempts] == ["sent"]
