"""Run ``smsrelay worker`` as a real subprocess, for signal and crash tests."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

import yaml


class WorkerProcess:
    """A worker subprocess whose simulator records each send to a file."""

    def __init__(
        self,
        tmp: Path,
        amqp_url: str,
        database_url: str,
        latency_ms: float = 100,
        settings: dict[str, Any] | None = None,
        name: str = "worker",
        args: tuple[str, ...] = (),
    ) -> None:
        self.tmp = tmp
        # Extra arguments of ``smsrelay worker`` (e.g. ``--processes 2``).
        self.args = args
        self.name = name
        self.record = tmp / "sent.jsonl"
        self.config = tmp / f"{name}.yaml"
        config: dict[str, Any] = {
            # ~500 sends/s: slow enough that a signal lands mid-stream on a busy machine.
            "prefetch": 50,
            "grace_period": 15,
            "providers": {
                "simulator": {
                    "type": "simulator",
                    "latency_ms": latency_ms,
                    "record_path": str(self.record),
                }
            },
            "retry": {"max_attempts": 3, "delays": [0.5], "jitter": 0.0},
        }
        # Top-level keys given here replace the defaults (e.g. other providers and routes).
        config.update(settings or {})
        self.config.write_text(yaml.safe_dump(config))
        self.env = {
            **os.environ,
            "SMSRELAY_AMQP_URL": amqp_url,
            "SMSRELAY_DATABASE_URL": database_url,
            "SMSRELAY_CONFIG": str(self.config),
            "SMSRELAY_LOG_FORMAT": "json",
        }
        self.proc: subprocess.Popen[bytes] | None = None
        self.runs = 0

    def start(self, ready: int = 1) -> None:
        """Start a worker (logs go to worker-<n>.log); wait for ``ready`` workers to start."""
        self.runs += 1
        # The child writes through its own copy of the descriptor; ours closes at once.
        with self.log_path.open("wb") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "smsrelay", "worker", *self.args],
                env=self.env,
                stdout=log,
                stderr=log,
            )
        self.wait_for_log("worker_started", count=ready)

    def wait_for_log(self, text: str, seconds: float = 30, count: int = 1) -> None:
        """Block until the current worker's log holds ``text`` (``count`` times)."""
        path = self.log_path
        deadline = time.monotonic() + seconds
        while path.read_text().count(text) < count:
            assert self.proc is not None and self.proc.poll() is None, path.read_text()[-3000:]
            assert time.monotonic() < deadline, f"{text!r} not logged: {path.read_text()[-3000:]}"
            time.sleep(0.05)

    @property
    def log_path(self) -> Path:
        """The current run's log file."""
        return self.tmp / f"{self.name}-{self.runs}.log"

    def log_count(self, text: str) -> int:
        """How often the current run's log holds ``text``."""
        return self.log_path.read_text().count(text) if self.log_path.exists() else 0

    def kill(self) -> None:
        """SIGKILL the worker and reap it."""
        assert self.signal(signal.SIGKILL) == -signal.SIGKILL

    def signal(self, sig: signal.Signals) -> int:
        """Send ``sig`` and wait for the exit code."""
        assert self.proc is not None
        self.proc.send_signal(sig)
        return self.proc.wait(timeout=60)

    def stop(self) -> None:
        """Terminate the worker if it still runs."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(timeout=60)

    def sends(self) -> Counter[str]:
        """How often each id reached the simulator, across all runs."""
        if not self.record.exists():
            return Counter()
        return Counter(json.loads(line)["id"] for line in self.record.read_text().splitlines())

    def logs(self) -> str:
        """Every worker run's log."""
        return "".join(p.read_text() for p in sorted(self.tmp.glob(f"{self.name}-*.log")))

    def log_lines(self) -> list[dict[str, Any]]:
        """Every JSON log line of every run."""
        return [json.loads(x) for x in self.logs().splitlines() if x.startswith("{")]
