"""Child processes of the harness, and what they cost: CPU and peak RSS from /proc.

CPU is ``utime + stime`` of a process and all its descendants (a Celery prefork
worker is a parent and its pool children). Peak RSS is ``VmHWM``, summed over the
same tree; writing ``5`` to ``/proc/<pid>/clear_refs`` resets it, so a measurement
sees the peak of its own window, not of start-up.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections.abc import Iterable, Sequence
from pathlib import Path

_TICK = os.sysconf("SC_CLK_TCK")


class Proc:
    """A started child whose stdout and stderr go to a log file."""

    def __init__(self, argv: Sequence[str], log: Path, env: dict[str, str]) -> None:
        self.log = log
        with log.open("wb") as out:
            self.popen = subprocess.Popen(
                list(argv), env=env, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL
            )

    @property
    def pid(self) -> int:
        return self.popen.pid

    def wait_for(self, text: str, seconds: float = 60.0, count: int = 1) -> None:
        """Block until the log holds ``text`` ``count`` times; raise with the log's tail if not."""
        deadline = time.monotonic() + seconds
        while True:
            content = self.log.read_text(errors="replace")
            if content.count(text) >= count:
                return
            if self.popen.poll() is not None or time.monotonic() > deadline:
                state = f"exited {self.popen.returncode}" if self.popen.poll() is not None else ""
                raise RuntimeError(f"{self.log.name}: no {text!r} {state}\n{content[-3000:]}")
            time.sleep(0.02)

    def stop(self, seconds: float = 30.0) -> int | None:
        """SIGTERM, wait, then SIGKILL; returns the exit code."""
        if self.popen.poll() is None:
            self.popen.send_signal(signal.SIGTERM)
            try:
                self.popen.wait(timeout=seconds)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait(timeout=10)
        return self.popen.returncode


def descendants(roots: Iterable[int]) -> list[int]:
    """``roots`` and every live process below them."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            stat = _stat(int(entry))
            if stat is not None:
                children.setdefault(int(stat[1]), []).append(int(entry))
    found: list[int] = []
    todo = list(roots)
    while todo:
        pid = todo.pop()
        found.append(pid)
        todo.extend(children.get(pid, []))
    return found


def _stat(pid: int) -> list[str] | None:
    """Fields of /proc/<pid>/stat after the command name: [state, ppid, ...]."""
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return raw[raw.rindex(")") + 2 :].split()


class Tree:
    """A measured set of processes: the given roots and their descendants."""

    def __init__(self, roots: Iterable[int]) -> None:
        self.roots = list(roots)

    def pids(self) -> list[int]:
        return descendants(self.roots)

    def cpu_seconds(self) -> float:
        """User + system CPU of every live process in the tree."""
        total = 0
        for pid in self.pids():
            stat = _stat(pid)
            if stat is not None:
                total += int(stat[11]) + int(stat[12])  # utime, stime (fields 14, 15)
        return total / _TICK

    def reset_peak(self) -> bool:
        """Reset VmHWM of every process; False where the kernel refused."""
        ok = True
        for pid in self.pids():
            try:
                Path(f"/proc/{pid}/clear_refs").write_text("5")
            except OSError:
                ok = False
        return ok

    def peak_rss_mb(self) -> float:
        """Sum of VmHWM (peak resident set) over the tree, in MB."""
        return sum(_status_kb(pid, "VmHWM") for pid in self.pids()) / 1024


def _status_kb(pid: int, key: str) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(key + ":"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def broker_pid() -> int | None:
    """The RabbitMQ node's Erlang VM (``beam.smp``) on this machine, if one runs."""
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                if Path(f"/proc/{entry}/comm").read_text().strip() == "beam.smp":
                    cmdline = Path(f"/proc/{entry}/cmdline").read_bytes()
                    if b"rabbit" in cmdline:
                        return int(entry)
            except OSError:
                continue
    return None
