"""An in-house SMS gateway on loopback, for the generic ``http`` provider's tests.

No provider publishes this API: it is the kind of small JSON gateway a platform team runs
in front of its carriers, and what the ``http`` provider's settings are written against::

    POST /v1/sms   X-Api-Key: <key>
    {"reference": "<our id>", "recipient": "+1...", "text": "...", "sender": "..." | null}

    202 {"data": {"id": "gw-...", "status": "queued"}}
    4xx/5xx {"error": {"code": "INVALID_RECIPIENT", "message": "..."}}

It checks the API key (401 ``UNAUTHORIZED``), that the body is a JSON object with a
``reference`` and a ``text`` (400 ``BAD_REQUEST``) and that ``recipient`` is E.164
(422 ``INVALID_RECIPIENT``).
"""

from __future__ import annotations

import json
import secrets
from dataclasses import dataclass
from typing import Any

from aiohttp import web

from tests.fakes.base import E164, Failure, LoopbackFake

API_KEY = "fake-gateway-key-7d1c"
SEND_PATH = "/v1/sms"


@dataclass
class HttpGatewayFake(LoopbackFake):
    """The gateway; start it with ``async with`` and read ``url``."""

    api_key: str = API_KEY

    def routes(self, app: web.Application) -> None:
        app.router.add_post(SEND_PATH, self._send)
        app.router.add_put(SEND_PATH, self._send)

    async def _send(self, request: web.Request) -> web.Response:
        body = await request.read()
        try:
            fields: Any = json.loads(body)
        except ValueError:
            fields = None
        response = self._answer(request, fields)
        return self.record(request, body, fields if isinstance(fields, dict) else {}, response)

    def _answer(self, request: web.Request, fields: Any) -> web.Response:
        if request.headers.get("X-Api-Key") != self.api_key:
            return _error(401, "UNAUTHORIZED", "missing or wrong X-Api-Key")
        if not isinstance(fields, dict) or not fields.get("reference") or not fields.get("text"):
            return _error(400, "BAD_REQUEST", "reference and text are required")
        recipient = str(fields.get("recipient") or "")
        if not E164.match(recipient):
            return _error(422, "INVALID_RECIPIENT", f"invalid recipient {recipient}")
        failure = self.failure_for(recipient)
        if failure is not None:
            return _failure(failure)
        data = {"id": "gw-" + secrets.token_hex(8), "status": "queued"}
        return web.json_response({"data": data}, status=202)


def _failure(failure: Failure) -> web.Response:
    return _error(failure.status, failure.code, failure.message, failure.headers())


def _error(
    status: int, code: str, message: str, headers: dict[str, str] | None = None
) -> web.Response:
    payload = {"error": {"code": code, "message": message}}
    return web.json_response(payload, status=status, headers=headers)
