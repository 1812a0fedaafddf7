"""A MessageBird SMS Messaging API (``POST /messages``) on loopback, and the JWT-signed
status reports MessageBird sends.

It checks what MessageBird checks: ``Authorization: AccessKey`` (401, code 2),
``recipients``, ``originator`` and ``body`` present (422, code 9 with the parameter),
recipients numeric MSISDNs (422, code 9 "no (correct) recipients found"). A valid call
gets 201 with the Message object, ``null`` where MessageBird answers null.
``fail(to, status=422, code="10", message="…")`` answers sends to ``to`` with
``{"errors": [{code, description, parameter: "recipients"}]}``; ``canned`` replaces the
next 201 answer (to replay a documented example).
"""

from __future__ import annotations

import hashlib
import json
import re
import secrets
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from urllib.parse import parse_qsl, urlencode

import jwt
from aiohttp import web

from smsrelay import segments
from smsrelay.providers.base import Webhook
from tests.fakes.base import LoopbackFake

ACCESS_KEY = "test_fakeMessageBirdAccessKey01"
SIGNING_KEY = "fake-messagebird-signing-key-0a9b8c7d6e5f"
_MSISDN = re.compile(r"^\d{7,15}$")


@dataclass
class MessageBirdFake(LoopbackFake):
    """The fake server; ``access_key`` is the key it accepts."""

    access_key: str = ACCESS_KEY
    canned: dict[str, Any] | None = None

    def routes(self, app: web.Application) -> None:
        app.router.add_post("/messages", self._messages)

    async def _messages(self, request: web.Request) -> web.Response:
        body = await request.read()
        fields = _fields(request.content_type, body)
        return self.record(request, body, fields or {}, self._answer(request, fields))

    def _answer(self, request: web.Request, fields: dict[str, Any] | None) -> web.Response:
        if request.headers.get("Authorization") != f"AccessKey {self.access_key}":
            return _errors(401, "2", "Request not allowed (incorrect access_key)", "access_key")
        if fields is None:
            return _errors(422, "21", "Bad request (phone number has unknown format)", None)
        for name in ("recipients", "originator", "body"):
            if not fields.get(name):
                return _errors(422, "9", f"{name} is required", name)
        recipients = [str(r) for r in fields["recipients"]]
        if not all(_MSISDN.match(r) for r in recipients):
            return _errors(422, "9", "no (correct) recipients found", "recipients")
        failure = self.failure_for(recipients[0])
        if failure is not None:
            extra = failure.headers()
            return _errors(failure.status, failure.code, failure.message, "recipients", extra)
        answer, self.canned = self.canned or _message(fields, recipients), None
        return web.json_response(answer, status=201)


def _fields(content_type: str, body: bytes) -> dict[str, Any] | None:
    if content_type == "application/x-www-form-urlencoded":
        form = dict(parse_qsl(body.decode(errors="replace")))
        return (
            {**form, "recipients": form["recipients"].split(",")} if "recipients" in form else form
        )
    try:
        data = json.loads(body)
    except ValueError:
        return None
    return data if isinstance(data, dict) else None


def _message(fields: dict[str, Any], recipients: list[str]) -> dict[str, Any]:
    message_id = secrets.token_hex(16)
    now = datetime.now(UTC).isoformat(timespec="seconds")
    items = [
        {
            "recipient": int(r),
            "status": "sent",
            "statusDatetime": now,
            "messagePartCount": segments.count(fields["body"]),
        }
        for r in recipients
    ]
    return {
        "id": message_id,
        "href": f"https://rest.messagebird.com/messages/{message_id}",
        "direction": "mt",
        "type": "sms",
        "originator": fields["originator"],
        "body": fields["body"],
        "reference": fields.get("reference"),
        "validity": None,
        "gateway": 10,
        "typeDetails": {},
        # datacoding "auto" resolves to plain or unicode; ASCII stands in for GSM-7 here.
        "datacoding": "plain" if fields["body"].isascii() else "unicode",
        "mclass": 1,
        "scheduledDatetime": None,
        "createdDatetime": now,
        "recipients": {
            "totalCount": len(items),
            "totalSentCount": len(items),
            "totalDeliveredCount": 0,
            "totalDeliveryFailedCount": 0,
            "items": items,
        },
    }


def _errors(
    status: int,
    code: str,
    text: str,
    parameter: str | None,
    headers: dict[str, str] | None = None,
) -> web.Response:
    error = {
        "code": int(code) if code.isdigit() else code,
        "description": text,
        "parameter": parameter,
    }
    return web.json_response({"errors": [error]}, status=status, headers=headers)


def report(message_id: str, status: str = "delivered", **extra: str) -> dict[str, str]:
    """The query of a status report, as MessageBird's documentation shows one."""
    return {
        "id": message_id,
        "reference": "m-1",
        "recipient": "14155550123",
        "status": status,
        "statusDatetime": "2026-03-01T12:00:00+00:00",
        "mccmnc": "310410",
        "ported": "0",
        "messagePartCount": "1",
        **extra,
    }


def signed_report(
    params: dict[str, str],
    issued: float,
    key: str = SIGNING_KEY,
    url: str = "https://relay.example.com/receipts/messagebird",
    lifetime: float = 60.0,
    body: bytes = b"",
) -> Webhook:
    """A status report GET to ``url`` with ``params``, signed at ``issued``."""
    full = f"{url}?{urlencode(params)}"
    claims: dict[str, Any] = {
        "iss": "MessageBird",
        "nbf": int(issued),
        "iat": int(issued),
        "exp": int(issued + lifetime),
        "jti": str(uuid.uuid4()),
        "url_hash": hashlib.sha256(full.encode()).hexdigest(),
    }
    if body:
        claims["payload_hash"] = hashlib.sha256(body).hexdigest()
    token = jwt.encode(claims, key, algorithm="HS256")
    headers = {"messagebird-signature-jwt": token}
    return Webhook("POST" if body else "GET", full, headers, body, dict(params))
