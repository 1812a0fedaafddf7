"""/healthz, /readyz and /metrics."""

from __future__ import annotations

import threading
import uuid

from smsrelay.api import AmqpPublisher
from smsrelay.store import SqlStore
from tests.api.support import DEAD_BROKER, Api, MemoryPublisher, api_settings, auth, running_api
from tests.conftest import eventually
from tests.integration.harness import running_worker


async def test_healthz_answers_while_the_process_runs(api: Api) -> None:
    """/healthz is 200 whatever the broker and store do."""
    answer = await api.client.get("/healthz")
    assert answer.status_code == 200 and answer.json() == {"status": "ok"}


async def test_readyz_is_200_with_broker_and_store_up(
    store: SqlStore, sqlite_url: str, amqp_url: str
) -> None:
    """Connected to the broker and the store answers: ready."""
    publisher = AmqpPublisher(amqp_url)
    async with running_api(api_settings(sqlite_url, amqp_url), store, publisher) as api:
        await eventually(lambda: publisher.ready)
        answer = await api.client.get("/readyz")
    assert answer.status_code == 200
    assert answer.json() == {"status": "ready", "checks": {"broker": "ok", "store": "ok"}}


async def test_readyz_is_503_naming_the_broker_when_its_url_is_wrong(
    store: SqlStore, sqlite_url: str
) -> None:
    """An unreachable broker URL: the app still starts, /readyz is 503 and says broker failed."""
    publisher = AmqpPublisher(DEAD_BROKER, reconnect_every=0.1)
    async with running_api(api_settings(sqlite_url), store, publisher) as api:
        answer = await api.client.get("/readyz")
        assert (await api.client.get("/healthz")).status_code == 200
    assert answer.status_code == 503
    assert answer.json() == {"status": "unready", "checks": {"broker": "failed", "store": "ok"}}


def _new_aiosqlite_threads(before: set[threading.Thread]) -> list[threading.Thread]:
    # aiosqlite names no thread; Python names it after its target function.
    return [
        t for t in threading.enumerate() if t not in before and "_connection_worker" in t.name
    ]


async def test_readyz_is_503_naming_the_store_when_it_cannot_be_reached(
    tmp_path: object, sqlite_url: str
) -> None:
    """A store that cannot be opened makes /readyz 503 with store failed."""
    before = set(threading.enumerate())
    broken = SqlStore.from_url("sqlite+aiosqlite:////nonexistent-dir/smsrelay.db")
    try:
        async with running_api(api_settings(sqlite_url), broken, MemoryPublisher()) as api:
            answer = await api.client.get("/readyz")
    finally:
        await broken.close()
        # aiosqlite stops the thread of a failed connect by a message nobody awaits: the
        # thread must have answered it before this test's event loop closes.
        await eventually(lambda: not _new_aiosqlite_threads(before))
    assert answer.status_code == 503
    assert answer.json()["checks"] == {"broker": "ok", "store": "failed"}


async def test_metrics_count_sends_after_a_send(amqp_url: str, sqlite_url: str) -> None:
    """Once a message is sent, /metrics has smsrelay_sends_total for its provider and country."""
    mid = f"m-{uuid.uuid4().hex[:8]}"
    async with running_worker(amqp_url, sqlite_url) as rt:
        publisher = AmqpPublisher(amqp_url)
        settings = api_settings(sqlite_url, amqp_url)
        async with running_api(
            settings, rt.store, publisher, dict(rt.providers), rt.metrics
        ) as api:
            await eventually(lambda: publisher.ready)
            message = {"id": mid, "to": "+14155550123", "body": "hi"}
            assert (
                await api.client.post("/v1/messages", json=message, headers=auth())
            ).status_code == 202

            async def sent() -> bool:
                record = await rt.store.get(mid)
                return record is not None and record.state.value == "sent"

            await eventually(sent)
            answer = await api.client.get("/metrics")
    assert answer.status_code == 200 and answer.headers["content-type"].startswith("text/plain")
    assert (
        'smsrelay_sends_total{country="US",outcome="sent",provider="simulator"} 1.0' in answer.text
    )
    assert "smsrelay_send_latency_seconds_bucket" in answer.text


async def test_metrics_count_receipts_by_status(api: Api) -> None:
    """Refused receipts show up as smsrelay_receipts_total{status="refused"}."""
    await api.client.post("/v1/receipts/twilio", content=b"MessageSid=SM1&MessageStatus=delivered")
    text = (await api.client.get("/metrics")).text
    assert 'smsrelay_receipts_total{provider="twilio",status="refused"} 1.0' in text
