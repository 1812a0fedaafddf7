"""``smsrelay worker --processes N``: one supervisor, N worker processes.

One Python process uses one core (the event loop and the GIL): the supervisor starts
N ordinary ``smsrelay worker`` processes so that one command uses the machine. It holds
no broker or database connection of its own; it migrates the store once (so that N
children do not race Alembic), then only starts, watches and stops children.

* SIGTERM or SIGINT to the supervisor is forwarded as SIGTERM to every child; each
  finishes its in-flight sends and exits as a lone worker does; the supervisor exits
  when the last child has (0 if every child exited 0).
* A child that exits while the supervisor is not stopping is logged
  (``worker_process_exited``) and restarted after a backoff that doubles from
  ``RESTART_BACKOFF`` up to ``RESTART_BACKOFF_MAX``, and resets once a child has run
  ``STABLE_AFTER`` seconds.
* Metrics: child ``i`` (0-based) serves its ``/metrics``, ``/healthz`` and ``/readyz``
  on ``metrics_port + i`` (``SMSRELAY_METRICS_PORT`` is set for it); with
  ``metrics_port`` 0 none does. Scrape each port as its own target.
"""

from __future__ import annotations

import asyncio
import os
import signal
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from smsrelay import logging as smslog
from smsrelay.settings import Settings
from smsrelay.store import SqlStore
from smsrelay.store.migrate import upgrade

log = smslog.get_logger(__name__)

RESTART_BACKOFF = 1.0
RESTART_BACKOFF_MAX = 30.0
STABLE_AFTER = 60.0
# The variable a child reads its index from (in its logs: ``worker_process``).
INDEX_VARIABLE = "SMSRELAY_WORKER_PROCESS"


@dataclass
class Child:
    """One worker process slot: its index, the running process and its restart backoff."""

    index: int
    proc: asyncio.subprocess.Process | None = None
    started: float = 0.0
    backoff: float = RESTART_BACKOFF
    restarts: int = 0


@dataclass
class Supervisor:
    """Starts ``processes`` workers, restarts those that die, stops all on a signal."""

    settings: Settings
    processes: int
    config_path: Path | None = None
    stop: asyncio.Event = field(default_factory=asyncio.Event)

    def command(self) -> list[str]:
        """The child's command line: this interpreter running a lone ``smsrelay worker``."""
        args = [sys.executable, "-m", "smsrelay", "worker", "--processes", "1"]
        return args + (["--config", str(self.config_path)] if self.config_path else [])

    def environment(self, index: int) -> dict[str, str]:
        """The supervisor's environment plus the child's index and its own metrics port."""
        env = {**os.environ, INDEX_VARIABLE: str(index)}
        if self.settings.metrics_port:
            env["SMSRELAY_METRICS_PORT"] = str(self.settings.metrics_port + index)
        return env

    async def run(self) -> int:
        """Run until SIGTERM/SIGINT; the exit code is 0 if every child stopped cleanly."""
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self.stop.set)
        await _migrate(self.settings)
        children = [Child(i) for i in range(self.processes)]
        log.info("supervisor_started", processes=self.processes, pid=os.getpid())
        codes = await asyncio.gather(*(self._keep(child) for child in children))
        log.info("supervisor_stopped", exit_codes=codes)
        return 0 if all(code == 0 for code in codes) else 1

    async def _keep(self, child: Child) -> int:
        """Keep one slot running until stopped; return its last process's exit code."""
        while True:
            proc = await self._start(child)
            code = await self._wait(proc)
            if self.stop.is_set():
                return code
            lived = time.monotonic() - child.started
            if lived >= STABLE_AFTER:
                child.backoff = RESTART_BACKOFF
            log.warning(
                "worker_process_exited",
                worker_process=child.index,
                pid=proc.pid,
                exit_code=code,
                ran_s=round(lived, 1),
                restart_in_s=child.backoff,
            )
            try:
                await asyncio.wait_for(self.stop.wait(), timeout=child.backoff)
                return code
            except TimeoutError:
                pass
            child.backoff = min(child.backoff * 2, RESTART_BACKOFF_MAX)
            child.restarts += 1

    async def _start(self, child: Child) -> asyncio.subprocess.Process:
        proc = await asyncio.create_subprocess_exec(
            *self.command(), env=self.environment(child.index)
        )
        child.proc, child.started = proc, time.monotonic()
        log.info("worker_process_started", worker_process=child.index, pid=proc.pid)
        return proc

    async def _wait(self, proc: asyncio.subprocess.Process) -> int:
        """The child's exit code; on stop, SIGTERM it first and wait for it to finish."""
        exited = asyncio.ensure_future(proc.wait())
        stopping = asyncio.ensure_future(self.stop.wait())
        await asyncio.wait({exited, stopping}, return_when=asyncio.FIRST_COMPLETED)
        if not exited.done():
            # The child drains within its own grace_period; no deadline of ours on top.
            proc.send_signal(signal.SIGTERM)
        stopping.cancel()
        return await exited


async def _migrate(settings: Settings) -> None:
    store = SqlStore.from_url(settings.database_url)
    try:
        await upgrade(store.engine)
    finally:
        await store.close()


async def run_supervisor(
    settings: Settings, processes: int, config_path: Path | None = None
) -> int:
    """Supervise ``processes`` workers until SIGTERM/SIGINT; the exit code of the whole."""
    return await Supervisor(settings, processes, config_path).run()
