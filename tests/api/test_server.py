"""`smsrelay api` as a real process: migrates, serves, and stops cleanly on SIGTERM."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import httpx


def free_port() -> int:
    """A loopback port nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_until_ready(
    base: str,
    proc: subprocess.Popen[bytes],
    seconds: float = 30,
    ready: Callable[[httpx.Response], bool] = lambda answer: answer.status_code == 200,
) -> httpx.Response:
    """Poll /readyz until ``ready`` says so (or the process dies, or time runs out)."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        assert proc.poll() is None, "smsrelay api exited early"
        try:
            answer = httpx.get(f"{base}/readyz", timeout=2)
            if ready(answer):
                return answer
        except httpx.TransportError:
            pass
        time.sleep(0.1)
    raise AssertionError("smsrelay api did not become ready")


def serving(answer: httpx.Response) -> bool:
    """The API serves: broker and store work (``sms.send`` may have no consumer yet)."""
    checks = answer.json().get("checks", {}) if answer.status_code in (200, 503) else {}
    return bool(checks.get("broker") == "ok" and checks.get("store") == "ok")


def start_api(
    tmp_path: Path, amqp_url: str, *args: str, **variables: str
) -> tuple[subprocess.Popen[bytes], str]:
    """Start `smsrelay api ARGS` on a free port (with extra SMSRELAY_ ``variables``)."""
    port = free_port()
    env = {
        **os.environ,
        **variables,
        "SMSRELAY_AMQP_URL": amqp_url,
        "SMSRELAY_DATABASE_URL": f"sqlite+aiosqlite:///{tmp_path}/smsrelay.db",
        "SMSRELAY_API_PORT": str(port),
        "SMSRELAY_API_KEYS": '["k-1"]',
        "SMSRELAY_LOG_FORMAT": "json",
    }
    env.pop("SMSRELAY_CONFIG", None)
    with (tmp_path / "api.log").open("wb") as log:
        command = [sys.executable, "-m", "smsrelay", "api", *args]
        proc = subprocess.Popen(command, env=env, stdout=log, stderr=log)
    return proc, f"http://127.0.0.1:{port}"


def stop(proc: subprocess.Popen[bytes]) -> None:
    """Kill the process if a test left it running."""
    if proc.poll() is None:
        proc.kill()
        proc.wait()


def test_api_command_serves_and_exits_zero_on_sigterm(tmp_path: Path, amqp_url: str) -> None:
    """`smsrelay api` migrates the store, reaches broker and store, answers with a key, exits 0 on SIGTERM."""
    proc, base = start_api(tmp_path, amqp_url)
    # No worker consumes sms.send here: only that check fails.
    up = {"broker": "ok", "store": "ok", "consumers": "failed"}
    try:
        wait_until_ready(base, proc, ready=lambda answer: answer.json()["checks"] == up)
        answer = httpx.get(f"{base}/v1/messages/nope", headers={"X-Api-Key": "k-1"}, timeout=5)
        assert answer.status_code == 404
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == 0
    finally:
        stop(proc)


def test_api_with_worker_sends_what_it_accepts(tmp_path: Path, amqp_url: str) -> None:
    """`smsrelay api --worker` also consumes sms.send: a posted message ends `sent`, counted in /metrics."""
    proc, base = start_api(tmp_path, amqp_url, "--worker")
    try:
        wait_until_ready(base, proc)
        message = {"id": "w-1", "to": "+14155550123", "body": "hi"}
        key = {"X-Api-Key": "k-1"}
        assert (
            httpx.post(f"{base}/v1/messages", json=message, headers=key, timeout=5).status_code
            == 202
        )
        deadline = time.monotonic() + 20
        while (answer := httpx.get(f"{base}/v1/messages/w-1", headers=key, timeout=5)).json()[
            "state"
        ] != "sent":
            # Right after the 202 the message is already known (accepted), never 404.
            assert answer.status_code == 200 and answer.json()["state"] == "accepted"
            assert time.monotonic() < deadline, "the message was never sent"
            time.sleep(0.1)
        assert "smsrelay_sends_total{" in httpx.get(f"{base}/metrics", timeout=5).text
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == 0
    finally:
        stop(proc)
