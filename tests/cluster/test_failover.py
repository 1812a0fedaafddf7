"""A node of the cluster dies: connections move to a survivor, publishing goes on, nothing lost."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

import aio_pika
from tests.cluster.cluster import Cluster

from smsrelay import brokers
from smsrelay import topology as t
from smsrelay.client import AsyncClient


async def until(condition: Callable[[], bool], seconds: float, what: str) -> None:
    """Wait for ``condition``; fail naming ``what`` after ``seconds``."""
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for: {what}"
        await asyncio.sleep(0.05)


async def queued_ids(url: str, queue: str) -> list[str]:
    """Every message id in ``queue``, taken out of it."""
    connection = await brokers.connect(url)
    async with connection:
        channel = await connection.channel()
        source = await channel.get_queue(queue, ensure=False)
        found: list[str] = []
        while (message := await source.get(no_ack=True, fail=False)) is not None:
            found.append(message.message_id or "")
        return found


async def test_a_connection_moves_to_a_survivor_when_its_node_dies(
    cluster: Cluster, cluster_vhost: str
) -> None:
    """A connection over the node list reconnects to another node when its own is killed."""
    urls = cluster.urls(cluster_vhost)
    connection = await brokers.connect(urls)
    async with connection:
        first = connection.url.port
        assert first is not None
        await cluster.kill(cluster.node_of(first))
        await until(
            lambda: connection.url.port != first and connection.connected.is_set(),
            60,
            "a connection to a survivor",
        )
        channel = await connection.channel()
        await channel.declare_queue("", exclusive=True)


async def test_publishing_resumes_when_the_leader_of_sms_send_dies(
    cluster: Cluster, cluster_vhost: str
) -> None:
    """Kill sms.send's leader mid-stream: confirms resume within seconds, none is lost."""
    urls = cluster.urls(cluster_vhost)
    async with AsyncClient(urls[0]) as probe:  # declares the topology
        await probe.publish_raw(b"{}", message_id="probe")
    leader = await cluster.leader(cluster_vhost, t.SEND_QUEUE)
    followers = [cluster.urls(cluster_vhost)[n - 1] for n in (1, 2, 3) if n != leader]
    confirmed: list[tuple[str, float, float]] = []  # id, publish started, confirmed
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()

    async def produce(client: AsyncClient, prefix: str) -> None:
        sent = 0
        while not stop.is_set():
            message_id = f"{prefix}-{sent}"
            sent += 1
            started = loop.time()
            try:
                await client.publish_raw(b"{}", message_id=message_id)
            except Exception:  # gave up after its deadline: not confirmed, not counted
                continue
            confirmed.append((message_id, started, loop.time()))

    def resumed(name: str, killed_at: float) -> float | None:
        done = [at for i, began, at in confirmed if i.startswith(name) and began > killed_at]
        return min(done) - killed_at if done else None

    # One producer on a follower (the channel RabbitMQ 3.10 nacks forever after the
    # leader dies), one on the whole list (its node may be the leader).
    on_follower = AsyncClient(followers[0], deadline=20)
    on_list = AsyncClient(",".join(urls), deadline=20)
    async with on_follower, on_list:
        tasks = [
            asyncio.create_task(produce(on_follower, "follower")),
            asyncio.create_task(produce(on_list, "list")),
        ]
        await until(lambda: len(confirmed) >= 300, 120, "300 confirms before the kill")
        await cluster.kill(leader)
        killed_at = loop.time()
        names = ("follower", "list")
        await until(lambda: all(resumed(n, killed_at) is not None for n in names), 60, "resumed")
        gaps = {n: resumed(n, killed_at) for n in names}
        after_kill = len(confirmed)
        await until(lambda: len(confirmed) >= after_kill + 300, 120, "300 more confirms")
        stop.set()
        await asyncio.gather(*tasks)
        nacks = on_follower._publisher.nacks if on_follower._publisher else 0
    print(f"confirms resumed {gaps} s after the kill; nacks on the follower: {nacks}")
    assert all(gap is not None and gap < 15 for gap in gaps.values()), gaps
    await cluster.revive(leader)
    found = set(await queued_ids(",".join(urls), t.SEND_QUEUE))
    missing = [i for i, _, _ in confirmed if i not in found]
    assert not missing, f"{len(missing)} confirmed but not queued, e.g. {missing[:5]}"


async def test_dlq_replay_uses_the_node_list(cluster: Cluster, cluster_vhost: str) -> None:
    """``dlq replay`` over the node list republishes every dead letter to sms.send."""
    from smsrelay.dlq import replay

    urls = ",".join(cluster.urls(cluster_vhost))
    connection = await brokers.connect(urls)
    async with connection:
        channel = await connection.channel(publisher_confirms=True)
        await t.declare_send_topology(channel)
        dlx = await channel.get_exchange(t.DLX)
        for i in range(20):
            await dlx.publish(aio_pika.Message(b"{}", message_id=f"dead-{i}"), routing_key="x")
    assert await replay(urls) == 20
    assert sorted(await queued_ids(urls, t.SEND_QUEUE)) == sorted(f"dead-{i}" for i in range(20))
