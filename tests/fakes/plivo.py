"""A Plivo Message API (``POST /v1/Account/{auth_id}/Message/``) on loopback, and the
V3-signed status callbacks Plivo sends.

It checks what Plivo checks before queueing: Basic auth for the account in the path
(401), a JSON body (400), ``src``, ``dst`` and ``text`` present and ``dst`` a number
(400, the ``error`` naming the parameter). A valid call gets 202 ``{api_id, message,
message_uuid: [uuid]}``. ``fail(to, status=400, code="", message="…")`` answers sends to
``to`` with ``{api_id, error: message}`` and that status; ``canned`` replaces the next
success answer (to replay a documented example).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import re
import uuid
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

from aiohttp import web

from smsrelay.providers.base import Webhook
from tests.fakes.base import LoopbackFake, basic_credentials

AUTH_ID = "MAFAKEPLIVOAUTHID001"
AUTH_TOKEN = "ZmFrZS1wbGl2by1hdXRoLXRva2VuLTEyMzQ1"
MESSAGE_PATH = "/v1/Account/{auth_id}/Message/"
_DST = re.compile(r"^\+?[1-9]\d{6,13}$")


@dataclass
class PlivoFake(LoopbackFake):
    """The fake server; ``auth_id``/``auth_token`` are the credentials it accepts."""

    auth_id: str = AUTH_ID
    auth_token: str = AUTH_TOKEN
    canned: dict[str, Any] | None = None

    def routes(self, app: web.Application) -> None:
        app.router.add_post(MESSAGE_PATH, self._message)

    async def _message(self, request: web.Request) -> web.Response:
        body = await request.read()
        try:
            fields = json.loads(body) if request.content_type == "application/json" else None
        except ValueError:
            fields = None
        data = fields if isinstance(fields, dict) else {}
        return self.record(request, body, data, self._answer(request, fields))

    def _answer(self, request: web.Request, fields: Any) -> web.Response:
        if not self._authorised(request):
            return _error(401, "authentication failed")
        if not isinstance(fields, dict):
            return _error(400, "request body must be a JSON object")
        for name in ("src", "dst", "text"):
            if not fields.get(name):
                return _error(400, f"Missing mandatory parameter: {name}")
        if not _DST.match(str(fields["dst"])):
            return _error(400, f"Invalid dst parameter: {fields['dst']}")
        failure = self.failure_for(str(fields["dst"]))
        if failure is not None:
            extra = failure.headers()
            return _error(failure.status, failure.message, extra)
        answer, self.canned = self.canned or _queued(), None
        return web.json_response(answer, status=202)

    def _authorised(self, request: web.Request) -> bool:
        credentials = basic_credentials(request.headers.get("Authorization", ""))
        expected = f"{self.auth_id}:{self.auth_token}"
        return credentials == expected and request.match_info["auth_id"] == self.auth_id


def _queued() -> dict[str, Any]:
    return {
        "api_id": str(uuid.uuid1()),
        "message": "message(s) queued",
        "message_uuid": [str(uuid.uuid1())],
    }


def _error(status: int, text: str, headers: dict[str, str] | None = None) -> web.Response:
    return web.json_response(
        {"api_id": str(uuid.uuid1()), "error": text}, status=status, headers=headers
    )


def callback(message_uuid: str, status: str = "delivered", **extra: str) -> dict[str, str]:
    """The form parameters of a status callback, as Plivo's callback reference lists them."""
    return {
        "From": "14155550199",
        "To": "14155550123",
        "Type": "sms",
        "Status": status,
        "MessageUUID": message_uuid,
        "ParentMessageUUID": message_uuid,
        "Units": "1",
        "TotalRate": "0.00500",
        "TotalAmount": "0.00500",
        "MCC": "310",
        "MNC": "410",
        "ErrorCode": "000",
        "Sequence": "3",
        "MessageTime": "2026-03-01 11:59:58+00:00",
        "QueuedTime": "2026-03-01 11:59:58+00:00",
        "SentTime": "2026-03-01 11:59:59+00:00",
        "DeliveryReportTime": "2026-03-01 12:00:00+00:00",
        **extra,
    }


def sign(method: str, url: str, params: dict[str, str], nonce: str, token: str) -> str:
    """X-Plivo-Signature-V3 as Plivo computes it, for one-valued ``params``."""
    parts = urlsplit(url)
    query = parse_qs(parts.query, keep_blank_values=True)
    signed = f"{parts.scheme}://{parts.netloc}{parts.path}"
    listed = "&".join(f"{k}={v}" for k in sorted(query) for v in sorted(query[k]))
    if method == "POST" and params:
        signed += f"?{listed}." if listed else "?"
        signed += "".join(f"{k}{params[k]}" for k in sorted(params))
    elif listed:
        signed += f"?{listed}"
    digest = hmac.new(token.encode(), f"{signed}.{nonce}".encode(), hashlib.sha256).digest()
    return base64.b64encode(digest).decode()


def signed_callback(
    params: dict[str, str],
    nonce: str,
    token: str = AUTH_TOKEN,
    url: str = "https://relay.example.com/receipts/plivo?smsrelay_id=m-1",
    method: str = "POST",
) -> Webhook:
    """``params`` sent to ``url`` the way Plivo sends a callback, with its V3 headers."""
    if method == "GET":
        url = f"{url}&{urlencode(params)}" if "?" in url else f"{url}?{urlencode(params)}"
        params = {}
    headers = {
        "x-plivo-signature-v3": sign(method, url, params, nonce, token),
        "x-plivo-signature-v3-nonce": nonce,
    }
    if method == "GET":
        return Webhook("GET", url, headers, b"")
    headers["content-type"] = "application/x-www-form-urlencoded"
    return Webhook("POST", url, headers, urlencode(params).encode())
