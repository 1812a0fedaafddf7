"""What every loopback provider fake shares: a real aiohttp server on a free port, the
record of what it received, and failures configured per destination number.

A fake subclasses ``LoopbackFake``, adds its routes in ``routes`` and, in each handler,
passes its answer through ``record`` so tests and the contract base can read ``received``::

    async with AcmeFake() as fake:
        fake.fail("+14155550100", status=400, code="21")
        fake.hang("+14155550101")  # taken, never answered (for fakes that support it)
        ...  # point the adapter at fake.url
        assert fake.received[0].fields["to"] == "14155550123"
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import json
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any, ClassVar, Self

from aiohttp import web


@dataclass(frozen=True)
class Failure:
    """What a fake answers for one destination number instead of accepting the message."""

    status: int
    code: str
    message: str
    retry_after: float | None = None

    def headers(self) -> dict[str, str]:
        """The answer's extra headers: ``Retry-After`` (seconds) when one is configured."""
        if self.retry_after is None:
            return {}
        return {"Retry-After": f"{self.retry_after:g}"}


E164 = re.compile(r"^\+[1-9]\d{6,14}$")
"""A number as the fakes whose providers want E.164 (with its "+") check it."""


def basic_credentials(header: str) -> str | None:
    """The ``user:password`` of an HTTP Basic ``Authorization`` value, or None if it is none."""
    scheme, _, encoded = header.partition(" ")
    if scheme.lower() != "basic":
        return None
    try:
        return base64.b64decode(encoded, validate=True).decode()
    except (binascii.Error, UnicodeDecodeError):
        return None


@dataclass(frozen=True)
class Received:
    """One request a fake received (``fields``: its parsed form or JSON) and its answer."""

    method: str
    path: str
    headers: dict[str, str]
    content_type: str
    body: bytes
    fields: dict[str, Any]
    status: int
    answer: bytes
    query: str = ""


@dataclass
class LoopbackFake:
    """Base of the fakes; start one with ``async with`` and read ``url``."""

    received_type: ClassVar[type[Received]] = Received
    host: str = "127.0.0.1"
    port: int = 0
    received: list[Received] = field(default_factory=list)
    failures: dict[str, Failure] = field(default_factory=dict)
    hangs: set[str] = field(default_factory=set)
    _runner: web.AppRunner | None = field(default=None, init=False, repr=False)
    _stopping: asyncio.Event | None = field(default=None, init=False, repr=False)
    _url: str = field(default="", init=False, repr=False)

    @property
    def url(self) -> str:
        """Base URL, e.g. ``http://127.0.0.1:40123``; set once started."""
        if not self._url:
            raise RuntimeError(f"{type(self).__name__} is not started")
        return self._url

    def fail(
        self,
        to: str,
        status: int,
        code: str,
        message: str | None = None,
        retry_after: float | None = None,
    ) -> None:
        """Answer sends to ``to`` (with or without its ``+``) with this status and code."""
        text = message or f"Configured failure {code}"
        self.failures[to.lstrip("+")] = Failure(status, str(code), text, retry_after)

    def failure_for(self, to: str) -> Failure | None:
        """The failure configured for ``to``, if any."""
        return self.failures.get(to.lstrip("+"))

    def hang(self, to: str) -> None:
        """Take sends to ``to`` (with or without its ``+``) and never answer them.

        The request is recorded as accepted, as a provider that took the message and
        lost its answer would have; the connection stays silent until the fake stops.
        """
        self.hangs.add(to.lstrip("+"))

    def hangs_for(self, to: str) -> bool:
        """Whether sends to ``to`` are taken and never answered."""
        return to.lstrip("+") in self.hangs

    async def hold(self) -> None:
        """Wait until the fake stops: the answer a hanging send never gets."""
        if self._stopping is None:
            self._stopping = asyncio.Event()
        await self._stopping.wait()

    def reset(self) -> None:
        """Forget received requests and configured failures."""
        self.received.clear()
        self.failures.clear()
        self.hangs.clear()

    def routes(self, app: web.Application) -> None:
        """Add the provider's endpoints to ``app``."""
        raise NotImplementedError

    def record(
        self, request: web.Request, body: bytes, fields: dict[str, Any], response: web.Response
    ) -> web.Response:
        """Remember ``request`` and the ``response`` it got; returns ``response``."""
        answer = response.body if isinstance(response.body, bytes) else b""
        self.received.append(
            self.received_type(
                request.method,
                request.path,
                dict(request.headers),
                request.content_type,
                body,
                fields,
                response.status,
                answer,
                request.query_string,
            )
        )
        return response

    async def answer_json(
        self,
        request: web.Request,
        bad_json: web.Response,
        answer: Callable[[web.Request, dict[str, Any]], web.Response],
    ) -> web.Response:
        """Read, answer and record a call with a JSON object body.

        A body that is not JSON gets ``bad_json``; any other is answered by ``answer``
        (a JSON value that is not an object is read as ``{}``).
        """
        body = await request.read()
        try:
            fields = json.loads(body)
        except ValueError:
            return self.record(request, body, {}, bad_json)
        fields = fields if isinstance(fields, dict) else {}
        return self.record(request, body, fields, answer(request, fields))

    async def start(self) -> None:
        """Listen on ``host:port`` (port 0 picks a free one)."""
        app = web.Application()
        self.routes(app)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        await web.TCPSite(self._runner, self.host, self.port).start()
        host, port = self._runner.addresses[0][:2]
        self._url = f"http://{host}:{port}"

    async def stop(self) -> None:
        """Stop listening."""
        if self._stopping is not None:
            self._stopping.set()  # release hanging handlers, or cleanup waits for them
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()
