"""The OTP lane: an OTP overtakes a bulk backlog; v1 producers still get their OTPs through."""

from __future__ import annotations

import asyncio
import json
import os
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import aio_pika

from smsrelay import settings as config
from smsrelay import topology as t
from smsrelay.amqp import declare_retry_queues
from smsrelay.client import AsyncClient
from smsrelay.models import SendRequest, SendResult
from smsrelay.providers.simulator import SimulatorProvider
from smsrelay.runtime import Runtime
from tests.conftest import eventually, queue_depth
from tests.integration.harness import event_log, publish_raw, request, running_worker
from tests.integration.test_cli import smsrelay

# The CI form; TEST_LANE_BACKLOG=100000 runs the figure (see README, OTP lane).
BACKLOG = int(os.environ.get("TEST_LANE_BACKLOG", "20000"))
OTPS = 200


class TimedSimulator(SimulatorProvider):
    """The simulator, noting when each message reached it (monotonic clock)."""

    def __init__(self, *args: Any) -> None:
        super().__init__(*args)
        self.arrived: dict[str, float] = {}

    async def send(self, request: SendRequest) -> SendResult:
        self.arrived[request.id] = time.monotonic()
        return await super().send(request)


@asynccontextmanager
async def timed_worker(amqp_url: str, database_url: str) -> AsyncIterator[TimedSimulator]:
    """A worker whose only provider is a ``TimedSimulator``."""
    settings = config.load(amqp_url=amqp_url, database_url=database_url)
    runtime = await Runtime.build(settings)
    provider = TimedSimulator("simulator", runtime.providers["simulator"].settings)
    runtime.providers["simulator"] = provider
    try:
        await runtime.start_worker()
        yield provider
    finally:
        await runtime.close()


async def _publish_backlog(amqp_url: str, count: int) -> None:
    """``count`` marketing requests in sms.send, confirmed, in batches."""
    async with await aio_pika.connect(amqp_url) as connection:
        channel = await connection.channel(publisher_confirms=True)
        exchange = await t.declare_send_topology(channel)
        for start in range(0, count, 1000):
            await asyncio.gather(
                *(
                    exchange.publish(
                        aio_pika.Message(
                            request(f"bulk-{i}", kind="marketing"),
                            delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
                        ),
                        routing_key=t.SEND_ROUTING_KEY,
                    )
                    for i in range(start, min(count, start + 1000))
                )
            )


def _p99(values: list[float]) -> float:
    ordered = sorted(values)
    return ordered[max(0, round(len(ordered) * 0.99) - 1)]


async def test_otp_overtakes_a_bulk_backlog(amqp_url: str, sqlite_url: str) -> None:
    """With BACKLOG marketing messages queued, 200 OTPs on the lane reach the provider first."""
    await _publish_backlog(amqp_url, BACKLOG)
    latencies: list[float] = []
    async with timed_worker(amqp_url, sqlite_url) as provider:
        async with AsyncClient(amqp_url) as client:
            for n in range(OTPS):
                mid = f"otp-{n}"
                published = time.monotonic()
                await client.send(id=mid, to="+14155550123", body="Your code is 123456", kind="otp")
                await eventually(
                    lambda mid=mid: mid in provider.arrived, seconds=30, interval=0.002
                )
                latencies.append(provider.arrived[mid] - published)
        bulk_sent = sum(1 for key in provider.arrived if key.startswith("bulk-"))
        ready, _ = await asyncio.to_thread(queue_depth, amqp_url, t.SEND_QUEUE)
    p99 = _p99(latencies)
    print(
        f"lane: backlog={BACKLOG} otps={OTPS} p99={p99 * 1000:.0f}ms "
        f"max={max(latencies) * 1000:.0f}ms bulk_sent_meanwhile={bulk_sent} bulk_ready={ready}"
    )
    # The positive signal: bulk was still waiting when every OTP had been sent.
    assert ready > 0 and bulk_sent < BACKLOG
    if BACKLOG >= 100_000:
        assert p99 < 1.0


async def test_v1_producer_otp_on_sms_send_is_sent(amqp_url: str, sqlite_url: str) -> None:
    """A producer that knows nothing of the lane (kind otp, key sms.send) still gets it sent."""
    mid = f"v1-{uuid.uuid4().hex[:8]}"
    async with event_log(amqp_url) as events, timed_worker(amqp_url, sqlite_url) as provider:
        await publish_raw(amqp_url, [request(mid, kind="otp")])
        await eventually(lambda: events.states(mid) == ["sent"])
    assert mid in provider.arrived


async def test_lane_and_send_bindings_do_not_overlap(amqp_url: str) -> None:
    """`sms.otp` lands only in the lane; `sms.send.otp` is a tagged v1 key for sms.send."""
    await publish_raw(amqp_url, [request("lane-1", kind="otp")], routing_key=t.OTP_ROUTING_KEY)
    await publish_raw(amqp_url, [request("tagged-1", kind="otp")], routing_key="sms.send.otp")
    async with await aio_pika.connect(amqp_url) as connection:
        channel = await connection.channel()
        lane = await channel.get_queue(t.OTP_QUEUE)
        assert json.loads((await lane.get(no_ack=True)).body)["id"] == "lane-1"
        assert await lane.get(no_ack=True, fail=False) is None
        bulk = await channel.get_queue(t.SEND_QUEUE)
        assert json.loads((await bulk.get(no_ack=True)).body)["id"] == "tagged-1"
        assert await bulk.get(no_ack=True, fail=False) is None


async def test_client_publishes_otp_on_the_lane(amqp_url: str) -> None:
    """smsrelay.client sends kind otp with routing key sms.otp and other kinds with sms.send."""
    async with AsyncClient(amqp_url) as client:
        await client.send(id="c-otp", to="+14155550123", body="code 1", kind="otp")
        await client.send(id="c-tx", to="+14155550123", body="hello")
    async with await aio_pika.connect(amqp_url) as connection:
        channel = await connection.channel()
        lane = await channel.get_queue(t.OTP_QUEUE)
        message = await lane.get(no_ack=True)
        assert json.loads(message.body)["id"] == "c-otp"
        assert message.routing_key == t.OTP_ROUTING_KEY
        bulk = await channel.get_queue(t.SEND_QUEUE)
        assert json.loads((await bulk.get(no_ack=True)).body)["id"] == "c-tx"


async def test_retried_otp_comes_back_to_the_lane(amqp_url: str) -> None:
    """A message parked in an OTP retry tier dead-letters to sms.otp as sms.otp.retry."""
    async with await aio_pika.connect(amqp_url) as connection:
        channel = await connection.channel(publisher_confirms=True)
        await t.declare_send_topology(channel)
        retry = await declare_retry_queues(channel, [0.05])
        await retry.publish(
            aio_pika.Message(request("r-1", kind="otp"), expiration=0.05),
            routing_key=t.otp_retry_queue(0.05),
        )
        lane = await channel.get_queue(t.OTP_QUEUE)
        got: list[Any] = []

        async def arrived() -> bool:
            message = await lane.get(no_ack=True, fail=False)
            if message is not None:
                got.append(message)
            return bool(got)

        await eventually(arrived, interval=0.05)
        assert got[0].routing_key == t.OTP_RETRY_ROUTING_KEY
        bulk = await channel.get_queue(t.SEND_QUEUE)
        assert await bulk.get(no_ack=True, fail=False) is None


async def test_transiently_failed_otp_is_retried_from_the_lane(
    amqp_url: str, sqlite_url: str
) -> None:
    """An OTP whose provider fails transiently is tried again after the delay, then ends failed."""
    mid = "retry-otp-1"
    overrides = {
        "providers": {
            "flaky": {"type": "simulator", "transient_failure_numbers": ["+14155550142"]}
        },
        "routes": {"*": ["flaky"]},
        "retry": {"max_attempts": 2, "delays": [0.2], "jitter": 0.0},
    }
    async with (
        event_log(amqp_url) as events,
        running_worker(amqp_url, sqlite_url, **overrides) as rt,
    ):
        async with AsyncClient(amqp_url) as client:
            await client.send(id=mid, to="+14155550142", body="code 1", kind="otp")
        await eventually(lambda: "failed" in events.states(mid))
        record = await rt.store.get(mid)
    assert record is not None and len(record.attempts) == 2


def test_topology_apply_declares_the_lane(amqp_url: str, tmp_path: Path) -> None:
    """`smsrelay topology apply` declares sms.otp and its retry tiers on a fresh vhost."""
    env = {"SMSRELAY_AMQP_URL": amqp_url, "SMSRELAY_RETRY__DELAYS": "[5]"}
    result = smsrelay("topology", "apply", env=env, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert queue_depth(amqp_url, t.OTP_QUEUE) == (0, 0)
    assert queue_depth(amqp_url, "sms.retry.otp.5000ms") == (0, 0)
