"""An OTLP/HTTP trace receiver that only counts: where the traced pipeline's spans go.

Run: ``python -m bench.otlp_sink [--port N]`` prints ``listening on <url>``; on
SIGTERM it prints ``exports <n> bytes <b>`` (proof that spans went out). It answers
every ``POST /v1/traces`` with 200 and an empty ``ExportTraceServiceResponse`` (an
empty protobuf message is zero bytes), as a collector would, without decoding.
"""

from __future__ import annotations

import argparse
import asyncio
import signal

from aiohttp import web


class Sink:
    """Counts export requests and their bytes."""

    def __init__(self) -> None:
        self.exports = 0
        self.bytes = 0

    async def traces(self, request: web.Request) -> web.Response:
        self.bytes += len(await request.read())
        self.exports += 1
        return web.Response(body=b"", content_type="application/x-protobuf")


async def _serve(host: str, port: int) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    sink = Sink()
    app = web.Application(client_max_size=64 * 1024 * 1024)
    app.router.add_post("/v1/traces", sink.traces)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, host, port).start()
    bound_host, bound_port = runner.addresses[0][:2]
    print(f"listening on http://{bound_host}:{bound_port}", flush=True)
    try:
        await stop.wait()
    finally:
        print(f"exports {sink.exports} bytes {sink.bytes}", flush=True)
        await runner.cleanup()


def main(argv: list[str] | None = None) -> None:
    """``python -m bench.otlp_sink --port N``."""
    parser = argparse.ArgumentParser(description="OTLP/HTTP trace sink for benchmarks")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    args = parser.parse_args(argv)
    asyncio.run(_serve(args.host, args.port))


if __name__ == "__main__":
    main()
