"""Real smsrelay processes for the operations tests, and waiting on their HTTP endpoints."""

from __future__ import annotations

import contextlib
import json
import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any


def free_port() -> int:
    """A loopback port nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Process:
    """One ``python -m smsrelay …`` (or ``program …``) subprocess logging to a file."""

    def __init__(
        self, args: list[str], env: dict[str, str], log: Path, program: list[str] | None = None
    ) -> None:
        self.log = log
        with log.open("wb") as out:
            self.proc = subprocess.Popen(
                [*(program or [sys.executable, "-m", "smsrelay"]), *args],
                env={**os.environ, **env},
                stdout=out,
                stderr=out,
            )

    def lines(self) -> list[dict[str, Any]]:
        """The JSON log lines so far."""
        text = self.log.read_text()
        return [json.loads(x) for x in text.splitlines() if x.startswith("{")]

    def stop(self) -> int:
        """SIGTERM and wait."""
        if self.proc.poll() is None:
            self.proc.terminate()
        return self.proc.wait(timeout=60)


@contextlib.contextmanager
def running(args: list[str], env: dict[str, str], log: Path) -> Iterator[Process]:
    """A process for the duration of the block."""
    process = Process(args, env, log)
    try:
        yield process
    finally:
        process.stop()


def get(url: str) -> tuple[int, str]:
    """Status and body of a GET (4xx/5xx included)."""
    try:
        with urllib.request.urlopen(url, timeout=5) as answer:
            return answer.status, answer.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


def wait_until(
    check: Callable[[], bool], process: Process, seconds: float = 60, what: str = ""
) -> None:
    """Poll ``check`` until true; fail early with the log if the process died."""
    deadline = time.monotonic() + seconds
    while True:
        with contextlib.suppress(OSError):
            if check():
                return
        assert process.proc.poll() is None, process.log.read_text()[-3000:]
        assert time.monotonic() < deadline, f"{what} not seen: {process.log.read_text()[-3000:]}"
        time.sleep(0.1)


def metric(text: str, name: str, **labels: str) -> float | None:
    """The value of one sample in Prometheus text format (None when absent).

    prometheus_client writes labels sorted by name; so does this.
    """
    wanted = ",".join(f'{k}="{v}"' for k, v in sorted(labels.items()))
    series = f"{name}{{{wanted}}}" if labels else name
    for line in text.splitlines():
        if line.startswith(series + " "):
            return float(line.rsplit(" ", 1)[1])
    return None
