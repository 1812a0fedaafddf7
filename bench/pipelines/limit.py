"""The limit: a bare aio-pika consumer that POSTs each request to the provider and acks.

No validation, no store, no events, no retries: one pooled aiohttp session, one task
per delivery, the ack after the provider answered. Whatever smsrelay does on top of
this costs throughput; this pipeline shows how much there is to lose.

Run as its own process: ``python -m bench.pipelines.limit AMQP_URL FAKE_URL PREFETCH``;
it prints ``ready`` once it consumes and stops on SIGTERM.
"""

from __future__ import annotations

import asyncio
import json
import signal
import sys
from typing import Any

import aio_pika
import aiohttp
from aio_pika.abc import AbstractIncomingMessage

from bench.fake_provider import ACCOUNT_SID, MESSAGES_PATH, SENDER, auth_header
from bench.pipelines import PYTHON, Context, Pipeline, env
from bench.procs import Proc
from smsrelay.topology import SEND_QUEUE


class LimitPipeline(Pipeline):
    """Launches ``python -m bench.pipelines.limit``."""

    wire = "smsrelay"

    def __init__(self, name: str, **_options: Any) -> None:
        self.name = name

    def start(self, ctx: Context, prefetch: int, tag: str) -> list[Proc]:
        argv = [PYTHON, "-m", "bench.pipelines.limit", ctx.amqp_url, ctx.fake_url, str(prefetch)]
        proc = Proc(argv, ctx.workdir / f"{tag}.log", env())
        proc.wait_for("ready")
        return [proc]

    def describe(self) -> str:
        return "bare aio-pika consumer + aiohttp POST, one task per delivery"


async def consume(amqp_url: str, fake_url: str, prefetch: int) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    url = fake_url + MESSAGES_PATH.format(sid=ACCOUNT_SID)
    headers = {"Authorization": auth_header()}
    tasks: set[asyncio.Task[None]] = set()
    connector = aiohttp.TCPConnector(limit=max(prefetch, 100))
    async with aiohttp.ClientSession(connector=connector) as session:

        async def send(message: AbstractIncomingMessage) -> None:
            request = json.loads(message.body)
            form = {"To": request["to"], "From": SENDER, "Body": request["body"]}
            async with session.post(url, data=form, headers=headers) as response:
                await response.read()
            await message.ack()

        async def on_message(message: AbstractIncomingMessage) -> None:
            task = asyncio.create_task(send(message))
            tasks.add(task)
            task.add_done_callback(tasks.discard)

        connection = await aio_pika.connect_robust(amqp_url)
        async with connection:
            channel = await connection.channel()
            await channel.set_qos(prefetch_count=prefetch)
            queue = await channel.get_queue(SEND_QUEUE)
            await queue.consume(on_message)
            print("ready", flush=True)
            await stop.wait()


def main() -> None:
    amqp_url, fake_url, prefetch = sys.argv[1], sys.argv[2], int(sys.argv[3])
    asyncio.run(consume(amqp_url, fake_url, prefetch))


if __name__ == "__main__":
    main()
