"""Stoplight Prism as a contract-validating mock of a provider's API, for the contract tests.

``prism mock <spec>`` answers a request that matches the spec with the spec's example
response, and refuses one that does not: with 422 ``application/problem+json`` whose
``validation`` list names each broken rule, or — where the spec documents a 4xx (Telnyx)
— with that status and an ``sl-violations`` header carrying the same list. Either is a
broken contract. Prism checks auth only for presence, and ignores unknown formats
(``phone-number``) and vendor rules (Twilio's ``x-twilio.conditional``).

Prism is started without ``--errors``: that flag changes nothing for requests (they are
always validated), it only turns a violation in Prism's *own* example answer — a defect
of the spec, not of the adapter — into a 500. Such response-side violations still show in
``sl-violations``; ``request_violations`` ignores them.

Startup is slow for big specs (measured on this machine: Twilio, 1.8 MB, about 1.2 s;
Telnyx, 4 MB, about 3.5-4 s), so ``PrismPool`` keeps one server per spec for the whole
test session. Prism serves a spec's paths without its servers' base path (Telnyx
``/messages``, not ``/v2/messages``); ``PrismRecorder`` sits between the adapter and Prism,
strips such a base path and records every exchange so a test can report Prism's verdict
even when the adapter turned the answer into an exception.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType

import aiohttp
import pytest
from aiohttp import web

ROOT = Path(__file__).resolve().parents[2]
PRISM = ROOT / "node_modules" / ".bin" / "prism"
STARTUP_TIMEOUT = 120.0
# Hop-by-hop and length headers are the proxy's own business on each side.
_NOT_FORWARDED = {"host", "content-length", "transfer-encoding", "connection", "content-encoding"}


def prism_available() -> bool:
    """True when ``npm ci`` has installed Prism into ``node_modules``."""
    return PRISM.is_file() and os.access(PRISM, os.X_OK)


def require_prism() -> None:
    """Skip the calling test without Prism, except in CI (``CI=true``) where it fails."""
    if prism_available():
        return
    reason = f"{PRISM.relative_to(ROOT)} is missing: run `npm ci` (make test does)"
    if os.environ.get("CI") == "true":
        pytest.fail(f"{reason}; CI must have Prism")
    pytest.skip(reason)


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


@dataclass
class PrismServer:
    """One ``prism mock`` process serving one spec on loopback."""

    spec: Path
    log_path: Path
    url: str = ""
    startup_seconds: float = 0.0
    _process: subprocess.Popen[bytes] | None = field(default=None, repr=False)

    def start(self) -> None:
        """Launch Prism and wait until it prints "Prism is listening"."""
        port = _free_port()
        command = [str(PRISM), "mock", "-h", "127.0.0.1", "-p", str(port), str(self.spec)]
        began = time.monotonic()
        with self.log_path.open("wb") as log:
            # Output goes to a file: Prism logs every request, and a pipe nobody reads fills up.
            self._process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT)
        self._wait_until_listening(began)
        self.startup_seconds = time.monotonic() - began
        self.url = f"http://127.0.0.1:{port}"

    def _wait_until_listening(self, began: float) -> None:
        assert self._process is not None
        while time.monotonic() - began < STARTUP_TIMEOUT:
            if "Prism is listening" in self.log():
                return
            if self._process.poll() is not None:
                raise RuntimeError(
                    f"prism exited ({self._process.returncode}): {self.log()[-2000:]}"
                )
            time.sleep(0.05)
        self.stop()
        raise RuntimeError(f"prism did not listen within {STARTUP_TIMEOUT:.0f}s on {self.spec}")

    def log(self) -> str:
        """Everything Prism has printed so far."""
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def stop(self) -> None:
        """Terminate Prism (kill it if it lingers)."""
        if self._process is None:
            return
        self._process.terminate()
        try:
            self._process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self._process.kill()
            self._process.wait()
        self._process = None


@dataclass
class PrismPool:
    """Prism servers started on first use, one per spec, stopped at the end of the session."""

    log_dir: Path | None = None
    servers: dict[str, PrismServer] = field(default_factory=dict)

    def url(self, spec: Path) -> str:
        """The base URL of a Prism serving ``spec``."""
        key = str(spec.resolve())
        server = self.servers.get(key)
        if server is None:
            if self.log_dir is None:
                self.log_dir = Path(tempfile.mkdtemp(prefix="smsrelay-prism-"))
            log = self.log_dir / f"prism-{len(self.servers)}-{spec.stem}.log"
            server = PrismServer(spec, log)
            server.start()
            self.servers[key] = server
        return server.url

    def stop(self) -> None:
        """Stop every server this pool started."""
        for server in self.servers.values():
            server.stop()
        self.servers.clear()


@dataclass(frozen=True)
class Exchange:
    """One request the adapter sent through the recorder, and Prism's answer to it."""

    method: str
    path: str
    status: int
    headers: dict[str, str]
    body: bytes

    def request_violations(self) -> list[str]:
        """Prism's complaints about the request (none when it kept the contract)."""
        listed = self._problem_validation() + self._header_violations()
        return [_describe(v) for v in listed if _is_request_error(v)]

    def refusal(self) -> str | None:
        """Prism's own problem text when it refused the call for another reason (no route…)."""
        if "problem+json" not in self.headers.get("content-type", "") or self.status < 400:
            return None
        problem = _json(self.body)
        if not isinstance(problem, dict):
            return f"HTTP {self.status}"
        return f"HTTP {self.status} {problem.get('title', '')}: {problem.get('detail', '')}"

    def _problem_validation(self) -> list[dict[str, object]]:
        if "problem+json" not in self.headers.get("content-type", ""):
            return []
        problem = _json(self.body)
        listed = problem.get("validation", []) if isinstance(problem, dict) else []
        # The problem's list is about the request; its locations omit the "request" prefix.
        return [{**v, "location": ["request", *v.get("location", [])]} for v in listed]

    def _header_violations(self) -> list[dict[str, object]]:
        listed = _json(self.headers.get("sl-violations", "").encode())
        return [v for v in listed if isinstance(v, dict)] if isinstance(listed, list) else []


def _json(raw: bytes) -> object:
    try:
        return json.loads(raw) if raw else None
    except ValueError:
        return None


def _is_request_error(violation: dict[str, object]) -> bool:
    location = violation.get("location")
    first = location[0] if isinstance(location, list) and location else None
    return first == "request" and violation.get("severity") == "Error"


def _describe(violation: dict[str, object]) -> str:
    location = violation.get("location")
    where = ".".join(str(p) for p in location) if isinstance(location, list) else "?"
    return f"{where}: {violation.get('message')} [{violation.get('code')}]"


@dataclass
class PrismRecorder:
    """A loopback proxy to Prism that strips ``base_path`` and records every exchange."""

    target: str
    base_path: str = ""
    exchanges: list[Exchange] = field(default_factory=list)
    url: str = ""
    _runner: web.AppRunner | None = field(default=None, repr=False)
    _client: aiohttp.ClientSession | None = field(default=None, repr=False)

    async def __aenter__(self) -> PrismRecorder:
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self._forward)
        self._client = aiohttp.ClientSession()
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", 0).start()
        host, port = self._runner.addresses[0][:2]
        self.url = f"http://{host}:{port}"
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
        if self._client is not None:
            await self._client.close()

    async def _forward(self, request: web.Request) -> web.Response:
        assert self._client is not None
        path = request.path_qs
        if self.base_path and path.startswith(self.base_path):
            path = path[len(self.base_path) :] or "/"
        headers = {k: v for k, v in request.headers.items() if k.lower() not in _NOT_FORWARDED}
        body = await request.read()
        async with self._client.request(
            request.method, self.target + path, headers=headers, data=body
        ) as answer:
            content = await answer.read()
            answered = {k.lower(): v for k, v in answer.headers.items()}
        self.exchanges.append(Exchange(request.method, path, answer.status, answered, content))
        kept = {k: v for k, v in answered.items() if k not in _NOT_FORWARDED}
        return web.Response(status=answer.status, headers=kept, body=content)

    def verdict(self) -> list[str]:
        """Every way Prism said the recorded requests broke the contract (empty: none)."""
        found: list[str] = []
        for exchange in self.exchanges:
            problems = exchange.request_violations()
            refusal = exchange.refusal() if not problems else None
            found += [f"{exchange.method} {exchange.path}: {p}" for p in problems]
            if refusal:
                found.append(f"{exchange.method} {exchange.path}: {refusal}")
        return found


POOL = PrismPool()
"""This test process's Prism servers (one test session per process, also under xdist)."""
