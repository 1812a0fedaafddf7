"""``smsrelay api``: the HTTP API under uvicorn, optionally with a worker in the same process.

uvicorn's own signal handling re-raises SIGTERM once it has stopped, which would kill
the process before the store and providers close; this module handles the signals
itself so the shutdown runs to the end.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
from collections.abc import Iterator

import uvicorn

from smsrelay import telemetry
from smsrelay.api.app import create_app
from smsrelay.api.broker import AmqpPublisher
from smsrelay.api.limits import guarded_protocol
from smsrelay.logging import get_logger
from smsrelay.runtime import Runtime, log_startup
from smsrelay.settings import Settings

log = get_logger(__name__)


class _Server(uvicorn.Server):
    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        # run_api installs the handlers (see the module docstring).
        yield


async def run_api(settings: Settings, *, with_worker: bool = False) -> None:
    """Migrate the store, serve the API on ``api_host:api_port`` until SIGTERM/SIGINT."""
    log_startup(settings, "api")
    telemetry.setup("smsrelay-api")  # off unless OTEL_* asks for traces
    runtime = await Runtime.build(settings)
    stats = runtime.start_queue_stats()
    app = create_app(
        settings,
        runtime.store,
        AmqpPublisher(settings.amqp_url),
        runtime.providers,
        runtime.metrics,
        send_consumers=stats.consumers,
        # Conversions reach the workers' guard only through Redis (or in this process).
        pumping_guard=runtime.pumping_guard() if settings.redis_url or with_worker else None,
    )
    limits = settings.api_limits
    config = uvicorn.Config(
        app,
        host=settings.api_host,
        port=settings.api_port,
        log_config=None,
        access_log=False,
        # Slow clients are dropped (see smsrelay.api.limits); headers are capped at 16 KiB.
        http=guarded_protocol(limits.header_timeout, limits.body_timeout),
        h11_max_incomplete_event_size=16 * 1024,
        limit_concurrency=limits.max_connections,
    )
    server = _Server(config)
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, lambda: setattr(server, "should_exit", True))
    try:
        if with_worker:
            await runtime.start_worker()
        log.info("api_starting", host=settings.api_host, port=settings.api_port)
        await server.serve()
    finally:
        await runtime.close()
