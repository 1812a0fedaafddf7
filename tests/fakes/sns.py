"""A front for AWS SNS on loopback: records every call, answers configured SNS errors.

moto (``moto_server``) is the SNS the tests send to, but it cannot be told to throttle, to
fail, or to refuse a valid number, and it does not show the raw requests it got. This fake
sits in front of it::

    async with SnsFake(upstream=moto_url) as fake:
        fake.fail("+14155550100", status=400, code="InvalidParameter",
                  message="Invalid parameter: PhoneNumber Reason: ...")
        ...  # point the adapter at fake.url
        assert fake.received[0].fields["PhoneNumber"] == "+14155550123"

A call for a number with a configured failure gets SNS's error XML
(``<ErrorResponse><Error><Type><Code><Message>``) without reaching moto; every other call
is forwarded to ``upstream`` (or, without one, answered with a PublishResponse of a fresh
MessageId). The Host header changes on the way, so moto must not check signatures.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from urllib.parse import parse_qsl
from xml.sax.saxutils import escape

import aiohttp
from aiohttp import web

from tests.fakes.base import Failure, LoopbackFake

NAMESPACE = "http://sns.amazonaws.com/doc/2010-03-31/"
_NOT_FORWARDED = {"host", "content-length", "transfer-encoding", "connection", "content-encoding"}


@dataclass
class SnsFake(LoopbackFake):
    """The front; start it with ``async with`` and read ``url``."""

    upstream: str | None = None
    _client: aiohttp.ClientSession | None = field(default=None, init=False, repr=False)

    def routes(self, app: web.Application) -> None:
        app.router.add_route("*", "/{tail:.*}", self._handle)

    async def start(self) -> None:
        self._client = aiohttp.ClientSession()
        await super().start()

    async def stop(self) -> None:
        await super().stop()
        if self._client is not None:
            await self._client.close()
            self._client = None

    async def _handle(self, request: web.Request) -> web.Response:
        body = await request.read()
        form = dict(parse_qsl(body.decode(errors="replace"), keep_blank_values=True))
        failure = self.failure_for(form.get("PhoneNumber", ""))
        if failure is not None:
            response = _error(failure)
        elif self.upstream:
            response = await self._forward(request, body)
        else:
            response = web.Response(body=_publish_xml(str(uuid.uuid4())), content_type="text/xml")
        return self.record(request, body, form, response)

    async def _forward(self, request: web.Request, body: bytes) -> web.Response:
        assert self._client is not None and self.upstream is not None
        headers = {k: v for k, v in request.headers.items() if k.lower() not in _NOT_FORWARDED}
        url = self.upstream + request.path_qs
        async with self._client.request(request.method, url, headers=headers, data=body) as resp:
            answer = await resp.read()
            kept = {k: v for k, v in resp.headers.items() if k.lower() not in _NOT_FORWARDED}
            return web.Response(status=resp.status, headers=kept, body=answer)


def _error(failure: Failure) -> web.Response:
    kind = "Receiver" if failure.status >= 500 else "Sender"
    answer = (
        f'<ErrorResponse xmlns="{NAMESPACE}"><Error><Type>{kind}</Type>'
        f"<Code>{escape(failure.code)}</Code><Message>{escape(failure.message)}</Message>"
        f"</Error><RequestId>{uuid.uuid4()}</RequestId></ErrorResponse>"
    ).encode()
    headers = {"Content-Type": "text/xml", **failure.headers()}
    return web.Response(status=failure.status, headers=headers, body=answer)


def _publish_xml(message_id: str) -> bytes:
    return (
        f'<PublishResponse xmlns="{NAMESPACE}"><PublishResult><MessageId>{message_id}'
        f"</MessageId></PublishResult><ResponseMetadata><RequestId>{uuid.uuid4()}"
        "</RequestId></ResponseMetadata></PublishResponse>"
    ).encode()
