"""The worker's operations endpoints: ``/metrics``, ``/healthz``, ``/readyz``.

The same three paths, with the same bodies, as the API serves (``api/health.py``), on
a port of the worker's own (``metrics_port``), so a worker process can be scraped and
probed like the API. Served by aiohttp's small server: the worker needs no framework.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, Mapping

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from smsrelay.metrics import Metrics

Checks = Callable[[], Awaitable[Mapping[str, bool]]]


class OpsServer:
    """A running operations endpoint; ``port`` is the bound port (useful with port 0)."""

    def __init__(self, metrics: Metrics, checks: Checks) -> None:
        self.metrics = metrics
        self.checks = checks
        self.port = 0
        self._runner: web.AppRunner | None = None

    async def start(self, host: str, port: int) -> None:
        """Listen on ``host:port``; raises ``OSError`` when the port is taken."""
        app = web.Application()
        app.router.add_get("/metrics", self._metrics)
        app.router.add_get("/healthz", self._healthz)
        app.router.add_get("/readyz", self._readyz)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        await web.TCPSite(self._runner, host, port).start()
        self.port = int(self._runner.addresses[0][1])

    async def _metrics(self, _: web.Request) -> web.Response:
        body = generate_latest(self.metrics.registry)
        return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})

    async def _healthz(self, _: web.Request) -> web.Response:
        return web.json_response({"status": "ok"})

    async def _readyz(self, _: web.Request) -> web.Response:
        results = await self.checks()
        ready = all(results.values())
        body = {
            "status": "ready" if ready else "unready",
            "checks": {name: "ok" if ok else "failed" for name, ok in results.items()},
        }
        return web.Response(
            text=json.dumps(body), status=200 if ready else 503, content_type="application/json"
        )

    async def close(self) -> None:
        """Stop listening."""
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
