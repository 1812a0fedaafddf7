"""Three workers on the cluster: a node lost, a worker killed, all rolled; nothing lost.

``TEST_CLUSTER_N`` requests (default 2,000; ``make cluster-test`` runs 20,000) are
published, three quarters through the client over the node list and a quarter through
one API process (``POST /v1/messages``, again after a 503: the same id is idempotent), while the node leading ``sms.send`` is
killed (``kill -9`` of its beam) and later brought back, one worker is SIGKILLed, and
every worker is restarted one by one (SIGTERM, start the new one, next).
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
from aio_pika.abc import AbstractIncomingMessage
from tests.api.test_server import free_port, wait_until_ready
from tests.cluster.cluster import Cluster
from tests.faults.chaos import TERMINAL, records, requests
from tests.integration.process import WorkerProcess

from smsrelay import brokers
from smsrelay import topology as t
from smsrelay.client import AsyncClient

N = int(os.environ.get("TEST_CLUSTER_N", "2000"))
INVALID = 20
EVENTS_QUEUE = "test.cluster-events"


async def until(condition: Callable[[], bool], seconds: float, what: str) -> None:
    """Wait for ``condition``; fail naming ``what`` after ``seconds``."""
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for: {what}"
        await asyncio.sleep(0.1)


@asynccontextmanager
async def event_ledger(urls: str) -> AsyncIterator[dict[str, set[str]]]:
    """id → states of every status event, from a quorum queue (it survives a node's death)."""
    seen: dict[str, set[str]] = {}

    async def on(message: AbstractIncomingMessage) -> None:
        async with message.process():
            event = json.loads(message.body)
            seen.setdefault(event["id"], set()).add(event["state"])

    connection = await brokers.connect(urls)
    async with connection:
        channel = await connection.channel()
        await channel.set_qos(prefetch_count=500)
        exchange = await t.declare_events_exchange(channel)
        queue = await channel.declare_queue(
            EVENTS_QUEUE, durable=True, arguments={"x-queue-type": "quorum"}
        )
        await queue.bind(exchange, routing_key="sms.status.#")
        await queue.consume(on)
        yield seen


def start_api(tmp: Path, urls: str, pg_url: str) -> tuple[subprocess.Popen[bytes], str]:
    """``smsrelay api`` on a free port, on the node list and the test's database."""
    port = free_port()
    env = {
        **os.environ,
        "SMSRELAY_AMQP_URL": urls,
        "SMSRELAY_DATABASE_URL": pg_url,
        "SMSRELAY_API_PORT": str(port),
        "SMSRELAY_API_KEYS": '["k-1"]',
        "SMSRELAY_LOG_FORMAT": "json",
    }
    env.pop("SMSRELAY_CONFIG", None)
    with (tmp / "api.log").open("wb") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "smsrelay", "api"], env=env, stdout=log, stderr=log
        )
    base = f"http://127.0.0.1:{port}"
    wait_until_ready(base, proc)
    return proc, base


async def post_until_accepted(http: httpx.AsyncClient, body: bytes) -> None:
    """POST one request; after a 503 or a dropped connection, the same request again."""
    for _ in range(600):
        try:
            answer = await http.post("/v1/messages", content=body)
        except httpx.TransportError:
            await asyncio.sleep(0.5)
            continue
        if answer.status_code == 202:
            return
        assert answer.status_code == 503, answer.text
        await asyncio.sleep(0.5)
    raise AssertionError("the API never accepted the request")


async def drain_ids(urls: str, queue: str) -> list[str]:
    """The ids in ``queue``, taken out of it."""
    connection = await brokers.connect(urls)
    async with connection:
        channel = await connection.channel()
        source = await channel.get_queue(queue, ensure=False)
        found: list[str] = []
        while (message := await source.get(no_ack=True, fail=False)) is not None:
            found.append(message.message_id or "")
        return found


async def test_three_workers_survive_a_lost_node_a_killed_worker_and_a_rolling_restart(
    cluster: Cluster, cluster_vhost: str, pg_url: str, tmp_path: Path
) -> None:
    """Every request ends with one terminal record and event; duplicates flagged; queues empty."""
    urls = ",".join(cluster.urls(cluster_vhost))
    settings: dict[str, Any] = {
        "prefetch": 100,
        "retry": {"max_attempts": 20, "delays": [0.5, 1.0], "jitter": 0.0},
    }
    workers = [
        WorkerProcess(tmp_path, urls, pg_url, latency_ms=5, settings=settings, name=f"w{i}")
        for i in range(3)
    ]
    bodies = requests("c", N)
    invalid = {f"bad-{i}": b'{"id": "bad-%d", "to": "not a number"}' % i for i in range(INVALID)}
    published = 0
    api: subprocess.Popen[bytes] | None = None
    async with event_ledger(urls) as events:
        # One at a time: the first migrates the empty database.
        for worker in workers:
            await asyncio.to_thread(worker.start)
        try:
            api, base = await asyncio.to_thread(start_api, tmp_path, urls, pg_url)
            headers = {"X-Api-Key": "k-1", "Content-Type": "application/json"}
            async with (
                AsyncClient(urls, deadline=60) as client,
                httpx.AsyncClient(base_url=base, headers=headers, timeout=30) as http,
            ):
                items = list(bodies.items())
                through_api = items[: N // 4]

                async def produce() -> None:
                    nonlocal published
                    for mid, body in [*items[N // 4 :], *invalid.items()]:
                        await client.publish_raw(body, message_id=mid)
                        published += 1

                async def post(part: list[tuple[str, bytes]]) -> None:
                    nonlocal published
                    for _, body in part:
                        await post_until_accepted(http, body)
                        published += 1

                producing = asyncio.gather(produce(), *(post(through_api[i::4]) for i in range(4)))
                total = N + INVALID
                await until(lambda: published >= total // 5, 600, "a fifth published")
                leader = await cluster.leader(cluster_vhost, t.SEND_QUEUE)
                await cluster.kill(leader)
                await until(lambda: published >= 2 * total // 5, 600, "two fifths published")
                await asyncio.to_thread(workers[0].kill)
                await asyncio.to_thread(workers[0].start)
                await until(lambda: published >= 3 * total // 5, 600, "three fifths published")
                await cluster.revive(leader)
                for worker in workers:  # the rolling deploy
                    assert await asyncio.to_thread(worker.signal, signal.SIGTERM) == 0
                    await asyncio.to_thread(worker.start)
                await producing
            valid = list(bodies)
            await until_settled(pg_url, events, valid, 900)
            found = await records(pg_url)
        finally:
            for worker in workers:
                worker.stop()
            if api is not None and api.poll() is None:
                api.terminate()
                api.wait(timeout=60)
    sends: Counter[str] = workers[0].sends()  # one record file for all three
    lost = [i for i in valid if found.get(i, ("", False))[0] not in TERMINAL]
    no_event = [i for i in valid if not events.get(i, set()) & TERMINAL]
    unflagged = [i for i in valid if sends[i] > 1 and not found[i][1]]
    never_sent = [i for i in valid if found[i][0] == "sent" and sends[i] == 0]
    flagged = sum(1 for i in valid if found[i][1])
    print(f"N={N}: {sum(sends.values())} provider requests, {flagged} flagged possible_duplicate")
    assert not lost, f"{len(lost)} without a terminal record, e.g. {lost[:5]}"
    assert not no_event, f"{len(no_event)} without a terminal event, e.g. {no_event[:5]}"
    assert not unflagged, f"{len(unflagged)} sent twice unflagged, e.g. {unflagged[:5]}"
    assert not never_sent, never_sent[:5]
    assert set(found) <= set(valid) | set(invalid)
    dead = await drain_ids(urls, t.DEAD_QUEUE)
    assert sorted(set(dead)) == sorted(invalid), dead[:10]
    for name, (ready, unacked) in (await cluster.depths(cluster_vhost)).items():
        if name not in (t.DEAD_QUEUE, EVENTS_QUEUE):
            assert (ready, unacked) == (0, 0), (name, ready, unacked)
    assert await drain_ids(urls, t.SEND_QUEUE) == []


async def until_settled(
    pg_url: str, events: dict[str, set[str]], ids: list[str], seconds: float
) -> None:
    """Until every id has a terminal record and a terminal event (or ``seconds`` pass)."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        found = await records(pg_url)
        if all(found.get(i, ("", False))[0] in TERMINAL for i in ids) and all(
            events.get(i, set()) & TERMINAL for i in ids
        ):
            return
        await asyncio.sleep(1)
