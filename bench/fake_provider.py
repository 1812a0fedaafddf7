"""A Twilio Messages API for benchmarks: its own process, counting what it receives.

Every pipeline sends ``Body = "bench <phase> <seq> <t_publish_ns>"``. The fake notes
the time a request arrives (before any added latency), so per phase it knows how many
messages arrived, when the first and the last did, each one's publish-to-receipt
latency, duplicates, and the most requests it held at once (sends in flight).

It speaks the Messages wire format (form-encoded POST to
``/2010-04-01/Accounts/{sid}/Messages.json``, HTTP Basic auth, a 201 with the message
resource as JSON) so the real smsrelay adapter and the official ``twilio`` SDK accept it.

Run: ``python -m bench.fake_provider [--port N]`` prints ``listening on <url>``.
Control (JSON): ``POST /_bench/latency {"ms": 50}``, ``GET /_bench/stats?phase=P``,
``GET /_bench/total`` (requests of all phases), ``POST /_bench/forget?phase=P``.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import signal
import time
from array import array
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl

from aiohttp import web

ACCOUNT_SID = "AC" + "0123456789abcdef" * 2
AUTH_TOKEN = "bench-twilio-auth-token"
SENDER = "+14155550100"
MESSAGES_PATH = "/2010-04-01/Accounts/{sid}/Messages.json"


def auth_header(sid: str = ACCOUNT_SID, token: str = AUTH_TOKEN) -> str:
    """The ``Authorization`` value Twilio expects for these credentials."""
    return "Basic " + base64.b64encode(f"{sid}:{token}".encode()).decode()


def bench_body(phase: str, seq: int, t_publish_ns: int) -> str:
    """The message text every pipeline carries: the fake parses it back."""
    return f"bench {phase} {seq} {t_publish_ns}"


@dataclass
class Phase:
    """What arrived for one phase of one measurement."""

    count: int = 0
    first_ns: int = 0
    last_ns: int = 0
    duplicates: int = 0
    max_in_flight: int = 0
    # Time-weighted sum of requests held, from the first receipt on (ns x requests).
    held_ns: int = 0
    held_until_ns: int = 0
    latencies_us: array[int] = field(default_factory=lambda: array("q"))
    seen: set[int] = field(default_factory=set)

    def stats(self) -> dict[str, Any]:
        ordered = sorted(self.latencies_us)
        return {
            "count": self.count,
            "first_ns": self.first_ns,
            "last_ns": self.last_ns,
            "duplicates": self.duplicates,
            "max_in_flight": self.max_in_flight,
            "mean_in_flight": round(self.held_ns / span, 1)
            if (span := self.held_until_ns - self.first_ns) > 0
            else None,
            "p50_ms": _percentile(ordered, 0.50),
            "p99_ms": _percentile(ordered, 0.99),
            "max_ms": ordered[-1] / 1000 if ordered else None,
        }


def _percentile(ordered: list[int], q: float) -> float | None:
    if not ordered:
        return None
    index = min(len(ordered) - 1, max(0, round(q * len(ordered)) - 1))
    return ordered[index] / 1000


class FakeTwilio:
    """The server's state: latency to add, phases, requests being held right now."""

    def __init__(self, latency_ms: float = 0.0) -> None:
        self.latency = latency_ms / 1000
        self.phases: dict[str, Phase] = {}
        self.in_flight = 0
        self._changed_ns = time.time_ns()
        self._current: Phase | None = None
        self.total = 0
        self.refused = 0
        self._auth = auth_header()
        self._path = MESSAGES_PATH.format(sid=ACCOUNT_SID)
        self._sid_counter = 0

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_post(self._path, self.messages)
        app.router.add_post("/_bench/latency", self.set_latency)
        app.router.add_get("/_bench/stats", self.stats)
        app.router.add_get("/_bench/total", self.totals)
        app.router.add_post("/_bench/forget", self.forget)
        return app

    async def messages(self, request: web.Request) -> web.Response:
        arrived = time.time_ns()
        self._hold(arrived, +1)
        try:
            body = await request.read()
            if request.headers.get("Authorization") != self._auth:
                self.refused += 1
                return _error(401, 20003, "Authenticate")
            form = dict(parse_qsl(body.decode()))
            text = form.get("Body", "")
            self._record(text, arrived)
            if self.latency:
                await asyncio.sleep(self.latency)
            return web.Response(
                body=self._resource(form), status=201, content_type="application/json"
            )
        finally:
            self._hold(time.time_ns(), -1)

    def _hold(self, now: int, change: int) -> None:
        """Count requests held, and their time-weighted sum for the phase being received."""
        if self._current is not None:
            self._current.held_ns += self.in_flight * (now - self._changed_ns)
            self._current.held_until_ns = now
        self._changed_ns = now
        self.in_flight += change

    def _record(self, text: str, arrived: int) -> None:
        self.total += 1
        parts = text.split(" ")
        if len(parts) != 4 or parts[0] != "bench":
            return
        phase = self.phases.get(parts[1])
        if phase is None:
            phase = self.phases[parts[1]] = Phase(first_ns=arrived)
        self._current = phase
        seq = int(parts[2])
        if seq in phase.seen:
            phase.duplicates += 1
            return
        phase.seen.add(seq)
        phase.count += 1
        phase.last_ns = arrived
        phase.latencies_us.append((arrived - int(parts[3])) // 1000)
        phase.max_in_flight = max(phase.max_in_flight, self.in_flight)

    def _resource(self, form: dict[str, str]) -> bytes:
        self._sid_counter += 1
        sid = f"SM{self._sid_counter:032x}"
        uri = f"/2010-04-01/Accounts/{ACCOUNT_SID}/Messages/{sid}"
        return json.dumps(
            {
                "account_sid": ACCOUNT_SID,
                "api_version": "2010-04-01",
                "body": form.get("Body", ""),
                "date_created": "Thu, 01 Jan 2026 00:00:00 +0000",
                "date_sent": None,
                "date_updated": "Thu, 01 Jan 2026 00:00:00 +0000",
                "direction": "outbound-api",
                "error_code": None,
                "error_message": None,
                "from": form.get("From"),
                "messaging_service_sid": form.get("MessagingServiceSid"),
                "num_media": "0",
                "num_segments": "1",
                "price": None,
                "price_unit": "USD",
                "sid": sid,
                "status": "queued",
                "subresource_uris": {"media": uri + "/Media.json"},
                "to": form.get("To"),
                "uri": uri + ".json",
            }
        ).encode()

    async def set_latency(self, request: web.Request) -> web.Response:
        self.latency = float((await request.json())["ms"]) / 1000
        return web.json_response({"latency_ms": self.latency * 1000})

    async def stats(self, request: web.Request) -> web.Response:
        phase = self.phases.get(request.query["phase"], Phase())
        return web.json_response(phase.stats())

    async def totals(self, request: web.Request) -> web.Response:
        return web.json_response(
            {"total": self.total, "refused": self.refused, "in_flight": self.in_flight}
        )

    async def forget(self, request: web.Request) -> web.Response:
        self.phases.pop(request.query["phase"], None)
        return web.json_response({"ok": True})


def _error(status: int, code: int, message: str) -> web.Response:
    payload = {"code": code, "message": message, "status": status}
    return web.json_response(payload, status=status)


async def _serve(host: str, port: int, latency_ms: float) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    # Keep-alive for as long as a pipeline's pool holds a connection; no access log.
    runner = web.AppRunner(FakeTwilio(latency_ms).app(), access_log=None, keepalive_timeout=300)
    await runner.setup()
    await web.TCPSite(runner, host, port, backlog=4096).start()
    bound_host, bound_port = runner.addresses[0][:2]
    print(f"listening on http://{bound_host}:{bound_port}", flush=True)
    try:
        await stop.wait()
    finally:
        await runner.cleanup()


def main(argv: list[str] | None = None) -> None:
    """``python -m bench.fake_provider --port N --latency-ms L``."""
    parser = argparse.ArgumentParser(description="fake Twilio for benchmarks")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--latency-ms", type=float, default=0.0)
    args = parser.parse_args(argv)
    asyncio.run(_serve(args.host, args.port, args.latency_ms))


if __name__ == "__main__":
    main()
