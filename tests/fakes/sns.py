"""A front for AWS SNS on loopback: records every call, answers configured SNS errors.

moto (``moto_server``) is the SNS the tests send to, but it cannot be told to throttle, to
fail, or to refuse a valid number, and it does not show the raw requests it got. This fake
sits in front of it::

    async with SnsFake(upstream=moto_url) as fake:
        fake.fail("+14155550100", status=400, code="InvalidParameter",
                  message="Invalid parameter: PhoneNumber Reason: ...")
        ...  # point the adapter at fake.url
        assert fake.received[0].form["PhoneNumber"] == "+14155550123"

A Publish to a number with a configured failure gets SNS's error XML
(``<ErrorResponse><Error><Type><Code><Message>``) without reaching moto; every other call
is forwarded to ``upstream`` (or, without one, answered with a PublishResponse of a fresh
MessageId). The Host header is rewritten on the way, so moto must not check signatures.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from types import TracebackType
from urllib.parse import parse_qsl
from xml.sax.saxutils import escape

import aiohttp
from aiohttp import web

NAMESPACE = "http://sns.amazonaws.com/doc/2010-03-31/"
_NOT_FORWARDED = {"host", "content-length", "transfer-encoding", "connection", "content-encoding"}


@dataclass(frozen=True)
class Failure:
    """What the fake answers for one destination number instead of forwarding the call."""

    status: int
    code: str
    message: str
    retry_after: float | None = None


@dataclass(frozen=True)
class Received:
    """One call the fake received, and the answer it gave (its own or upstream's)."""

    method: str
    path: str
    headers: dict[str, str]
    content_type: str
    body: bytes
    form: dict[str, str]
    status: int
    answer: bytes
    query: str = ""


@dataclass
class SnsFake:
    """The front; start it with ``async with`` and read ``url``."""

    upstream: str | None = None
    host: str = "127.0.0.1"
    received: list[Received] = field(default_factory=list)
    failures: dict[str, Failure] = field(default_factory=dict)
    url: str = ""
    _runner: web.AppRunner | None = field(default=None, repr=False)
    _client: aiohttp.ClientSession | None = field(default=None, repr=False)

    def fail(
        self, to: str, status: int, code: str, message: str = "", retry_after: float | None = None
    ) -> None:
        """Answer Publish calls to ``to`` with this HTTP status and SNS error code."""
        self.failures[to] = Failure(status, code, message or f"Configured {code}", retry_after)

    async def __aenter__(self) -> SnsFake:
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self._handle)
        self._client = aiohttp.ClientSession()
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        await web.TCPSite(self._runner, self.host, 0).start()
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

    async def _handle(self, request: web.Request) -> web.Response:
        body = await request.read()
        form = dict(parse_qsl(body.decode(errors="replace"), keep_blank_values=True))
        failure = self.failures.get(form.get("PhoneNumber", ""))
        if failure is not None:
            status, headers, answer = failure.status, _retry_after(failure), _error_xml(failure)
        elif self.upstream:
            status, headers, answer = await self._forward(request, body)
        else:
            status, headers, answer = 200, {}, _publish_xml(str(uuid.uuid4()))
        self.received.append(
            Received(
                request.method,
                request.path,
                dict(request.headers),
                request.content_type,
                body,
                form,
                status,
                answer,
                request.query_string,
            )
        )
        headers.setdefault("Content-Type", "text/xml")
        return web.Response(status=status, headers=headers, body=answer)

    async def _forward(
        self, request: web.Request, body: bytes
    ) -> tuple[int, dict[str, str], bytes]:
        assert self._client is not None and self.upstream is not None
        headers = {k: v for k, v in request.headers.items() if k.lower() not in _NOT_FORWARDED}
        url = self.upstream + request.path_qs
        async with self._client.request(request.method, url, headers=headers, data=body) as resp:
            answer = await resp.read()
            kept = {k: v for k, v in resp.headers.items() if k.lower() not in _NOT_FORWARDED}
            return resp.status, kept, answer


def _retry_after(failure: Failure) -> dict[str, str]:
    return {} if failure.retry_after is None else {"Retry-After": f"{failure.retry_after:g}"}


def _error_xml(failure: Failure) -> bytes:
    kind = "Receiver" if failure.status >= 500 else "Sender"
    return (
        f'<ErrorResponse xmlns="{NAMESPACE}"><Error><Type>{kind}</Type>'
        f"<Code>{escape(failure.code)}</Code><Message>{escape(failure.message)}</Message>"
        f"</Error><RequestId>{uuid.uuid4()}</RequestId></ErrorResponse>"
    ).encode()


def _publish_xml(message_id: str) -> bytes:
    return (
        f'<PublishResponse xmlns="{NAMESPACE}"><PublishResult><MessageId>{message_id}'
        f"</MessageId></PublishResult><ResponseMetadata><RequestId>{uuid.uuid4()}"
        "</RequestId></ResponseMetadata></PublishResponse>"
    ).encode()
