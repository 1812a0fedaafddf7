"""Fault injection: a provider that takes messages and never answers, with a backup in the route.

Two Twilio-format servers on loopback; the primary hangs on 5 % of the numbers (it records
the message as accepted, then stays silent past the client's timeout). A message is
counted as sent each time a server accepted it, whichever answer reached the worker.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from collections import Counter
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import pytest
from sqlalchemy import text

from smsrelay.errors import OutcomeUnknown, TransientProviderError
from smsrelay.models import validate_request
from smsrelay.providers.twilio import TwilioProvider, TwilioSettings
from smsrelay.runtime import Runtime
from tests.conftest import eventually
from tests.fakes.twilio import ACCOUNT_SID, AUTH_TOKEN, TwilioFake
from tests.integration.harness import EventLog, event_log, publish_raw, running_worker

COUNT = 200
NUMBERS = [f"+1415555{n:04d}" for n in range(2000, 2100)]
HUNG = NUMBERS[::20]  # 5 of 100 numbers: 5 % of the requests
TIMEOUT = 3.0


def _twilio(url: str, **extra: Any) -> dict[str, Any]:
    return {
        "type": "twilio",
        "base_url": url,
        "account_sid": ACCOUNT_SID,
        "auth_token": AUTH_TOKEN,
        "sender": "+14155550100",
        "timeout": TIMEOUT,
        **extra,
    }


def _requests(prefix: str) -> dict[str, tuple[str, bytes]]:
    """id → (number, wire body); each body names its id, so a fake's record says whose it is."""
    out = {}
    for i in range(COUNT):
        mid = f"{prefix}-{i}"
        to = NUMBERS[i % len(NUMBERS)]
        out[mid] = (to, json.dumps({"id": mid, "to": to, "body": f"parcel {mid}"}).encode())
    return out


def _accepted(*fakes: TwilioFake) -> Counter[str]:
    """id → how many times a server accepted it."""
    return Counter(
        r.form["Body"].removeprefix("parcel ")
        for fake in fakes
        for r in fake.received
        if r.status == 201
    )


async def _flags(runtime: Runtime) -> dict[str, tuple[str, bool]]:
    async with runtime.store.engine.connect() as conn:
        rows = await conn.execute(text("SELECT id, state, possible_duplicate FROM messages"))
        return {r.id: (r.state, bool(r.possible_duplicate)) for r in rows}


@asynccontextmanager
async def _relay(
    amqp_url: str, db: str, primary: dict[str, Any], backup: TwilioFake
) -> AsyncIterator[tuple[EventLog, Runtime]]:
    overrides = {
        "providers": {"primary": primary, "backup": _twilio(backup.url)},
        "routes": {"*": ["primary", "backup"]},
    }
    async with event_log(amqp_url) as events, running_worker(amqp_url, db, **overrides) as rt:
        yield events, rt


async def _run(events: EventLog, amqp_url: str, reqs: dict[str, tuple[str, bytes]]) -> None:
    await publish_raw(amqp_url, [body for _, body in reqs.values()])
    final = {"sent", "failed"}
    await eventually(
        lambda: all(set(events.states(mid)) & final for mid in reqs), seconds=90, interval=0.2
    )


async def test_hangs_with_a_backup_route_leave_no_unflagged_duplicate(
    amqp_url: str, sqlite_url: str
) -> None:
    """5 % of sends hang past the timeout, retries allowed: each goes to the backup, flagged in record, event and metric."""
    reqs = _requests(f"hang-{uuid.uuid4().hex[:6]}")
    async with TwilioFake() as primary, TwilioFake() as backup:
        for number in HUNG:
            primary.hang(number)
        config = _twilio(primary.url, retry_unknown_outcome=True)
        async with _relay(amqp_url, sqlite_url, config, backup) as (events, rt):
            await _run(events, amqp_url, reqs)
            stored = await _flags(rt)
            metric = rt.metrics.registry.get_sample_value("smsrelay_possible_duplicates_total")
        sends = _accepted(primary, backup)
    hung = {mid for mid, (to, _) in reqs.items() if to in HUNG}
    twice = {mid for mid, n in sends.items() if n > 1}
    assert set(sends) == set(reqs), "a message was lost"
    assert hung <= twice, "a hung send was not retried at the backup"
    assert [mid for mid in twice if not stored[mid][1]] == [], "unflagged duplicates"
    assert all(events.of(mid)[-1]["possible_duplicate"] for mid in twice)
    assert all(stored[mid] == ("sent", True) for mid in hung)
    assert metric is not None and metric >= len(hung)


async def test_hangs_without_permission_fail_instead_of_sending_twice(
    amqp_url: str, sqlite_url: str
) -> None:
    """By default a send whose answer never came is not tried elsewhere: `failed`, sent once, 0 duplicates."""
    reqs = _requests(f"nohang-{uuid.uuid4().hex[:6]}")
    async with TwilioFake() as primary, TwilioFake() as backup:
        for number in HUNG:
            primary.hang(number)
        async with _relay(amqp_url, sqlite_url, _twilio(primary.url), backup) as (events, rt):
            await _run(events, amqp_url, reqs)
            stored = await _flags(rt)
        sends = _accepted(primary, backup)
    hung = {mid for mid, (to, _) in reqs.items() if to in HUNG}
    assert set(sends) == set(reqs), "a message was lost"
    assert max(sends.values()) == 1
    assert all(stored[mid][0] == "failed" for mid in hung)
    assert {events.of(mid)[-1]["error"]["code"] for mid in hung} == {"primary:no-answer"}
    assert not any(mid in hung for r in backup.received for mid in [r.form["Body"][7:]])


async def test_refused_connection_fails_over_without_a_flag(amqp_url: str, sqlite_url: str) -> None:
    """Nothing listens at the primary: every message goes to the backup once, none flagged."""
    reqs = _requests(f"refused-{uuid.uuid4().hex[:6]}")
    async with TwilioFake() as closed:
        dead_url = closed.url  # a port that was just free, and is free again
    async with TwilioFake() as backup:
        async with _relay(amqp_url, sqlite_url, _twilio(dead_url), backup) as (events, rt):
            await _run(events, amqp_url, reqs)
            stored = await _flags(rt)
            record = await rt.store.get(next(iter(reqs)))
        sends = _accepted(backup)
    assert sends == Counter(dict.fromkeys(reqs, 1))
    assert not any(flag for _, flag in stored.values())
    assert record is not None
    assert [(a.provider, a.outcome) for a in record.attempts] == [
        ("primary", "transient"),
        ("backup", "sent"),
    ]


async def _send_once(url: str, to: str) -> None:
    provider = TwilioProvider("primary", TwilioSettings(**_twilio(url, timeout=0.5)))
    try:
        await provider.send(validate_request({"id": "m-1", "to": to, "body": "hi"}))
    finally:
        await provider.close()


async def test_no_answer_after_the_request_left_is_an_unknown_outcome() -> None:
    """A read timeout once the request was sent raises OutcomeUnknown: the provider may have it."""
    async with TwilioFake() as fake:
        fake.hang(HUNG[0])
        with pytest.raises(OutcomeUnknown) as caught:
            await _send_once(fake.url, HUNG[0])
        assert len(fake.received) == 1
    assert caught.value.code == "no-answer"


async def test_refused_connection_is_a_plain_transient_error() -> None:
    """Nothing was sent when the connection is refused: TransientProviderError, not OutcomeUnknown."""
    async with TwilioFake() as closed:
        dead_url = closed.url
    with pytest.raises(TransientProviderError) as caught:
        await _send_once(dead_url, NUMBERS[1])
    assert not isinstance(caught.value, OutcomeUnknown)
    assert caught.value.code == "network"


async def test_connection_closed_after_the_request_is_an_unknown_outcome() -> None:
    """A server that reads the whole request and closes without answering: OutcomeUnknown."""
    taken = asyncio.Event()

    async def swallow(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        taken.set()
        writer.close()

    server = await asyncio.start_server(swallow, "127.0.0.1", 0)
    host, port = server.sockets[0].getsockname()[:2]
    try:
        with pytest.raises(OutcomeUnknown):
            await _send_once(f"http://{host}:{port}", NUMBERS[2])
    finally:
        server.close()
        await server.wait_closed()
    assert taken.is_set()
