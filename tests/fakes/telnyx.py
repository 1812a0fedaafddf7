"""A Telnyx Messaging API (``POST /v2/messages``) on loopback, and the Ed25519-signed
message events Telnyx sends.

It checks what Telnyx checks before queueing: the Bearer API key (401, code 10009), JSON
(400, 10015), ``to`` present (400, 10004) and +E.164 (400, 40310), a sender (``from`` or
``messaging_profile_id``: 400, 10004) and text (400, 40316). A queued message is 200
``{"data": <message>}``. ``fail(to, status, code)`` answers sends to ``to`` with
``{"errors": [{"code", "title", "detail"}]}`` instead. The adapter's base URL is
``fake.api_url`` (the server URL, with ``/v2``, as in the spec).

``event`` builds a ``message.sent``/``message.finalized`` event for a message the fake
queued, and ``signed`` signs a body with the fake's Ed25519 key as Telnyx does;
``public_key`` is the key to configure in the adapter.
"""

from __future__ import annotations

import base64
import json
import time
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from aiohttp import web
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from smsrelay import segments
from smsrelay.providers.base import Webhook
from tests.fakes.base import E164, LoopbackFake

API_KEY = "KEY0123456789ABCDEF_fakeTelnyxKey"
RECEIPT_URL = "https://relay.example.com/receipts/telnyx"


@dataclass
class TelnyxFake(LoopbackFake):
    """The fake server; ``api_key`` is the key it accepts, ``signing_key`` signs events."""

    api_key: str = API_KEY
    signing_key: Ed25519PrivateKey = field(default_factory=Ed25519PrivateKey.generate)
    messages: dict[str, dict[str, Any]] = field(default_factory=dict)

    @property
    def api_url(self) -> str:
        """The API's server URL on this fake, e.g. ``http://127.0.0.1:40123/v2``."""
        return f"{self.url}/v2"

    @property
    def public_key(self) -> str:
        """The base64 Ed25519 public key that verifies this fake's signatures."""
        return public_key_of(self.signing_key)

    def routes(self, app: web.Application) -> None:
        app.router.add_post("/v2/messages", self._messages)

    async def _messages(self, request: web.Request) -> web.Response:
        return await self.answer_json(request, _error(400, "10015", "Bad Request"), self._answer)

    def _answer(self, request: web.Request, fields: dict[str, Any]) -> web.Response:
        if request.headers.get("Authorization") != f"Bearer {self.api_key}":
            return _error(401, "10009", "Authentication failed", "Could not understand the key.")
        problem = _invalid(fields)
        if problem is not None:
            return _error(400, *problem)
        failure = self.failure_for(fields["to"])
        if failure is not None:
            headers = failure.headers()
            return _error(failure.status, failure.code, failure.message, None, headers)
        message = _queued(fields)
        self.messages[message["id"]] = message
        return web.json_response({"data": message})

    def event(
        self,
        message_id: str,
        status: str = "delivered",
        event_type: str = "message.finalized",
        error_code: str | None = None,
    ) -> bytes:
        """The body of the event Telnyx posts about ``message_id`` reaching ``status``."""
        payload = {**self.messages[message_id]}
        payload["to"] = [{**to, "status": status} for to in payload["to"]]
        payload["completed_at"] = _now() if event_type == "message.finalized" else None
        if error_code:
            payload["errors"] = [{"code": error_code, "title": "Delivery failed"}]
        data = {
            "event_type": event_type,
            "id": str(uuid.uuid4()),
            "occurred_at": "2026-03-01T12:00:00.250+00:00",
            "payload": payload,
            "record_type": "event",
        }
        meta = {"attempt": 1, "delivered_to": RECEIPT_URL}
        return json.dumps({"data": data, "meta": meta}).encode()

    def signed(self, body: bytes, timestamp: float | None = None) -> Webhook:
        """``body`` as Telnyx posts it, signed at ``timestamp`` (default: now)."""
        return signed_event(body, self.signing_key, timestamp)


def signed_event(
    body: bytes, key: Ed25519PrivateKey, timestamp: float | None = None, url: str = RECEIPT_URL
) -> Webhook:
    """A webhook carrying ``body`` with Telnyx's Ed25519 signature headers."""
    stamp = str(int(time.time() if timestamp is None else timestamp))
    signature = key.sign(stamp.encode() + b"|" + body)
    headers = {
        "content-type": "application/json",
        "telnyx-signature-ed25519": base64.b64encode(signature).decode(),
        "telnyx-timestamp": stamp,
    }
    return Webhook("POST", url, headers, body)


def public_key_of(key: Ed25519PrivateKey) -> str:
    """The base64 raw public key of ``key``, as Mission Control shows it."""
    raw = key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
    return base64.b64encode(raw).decode()


def _invalid(fields: dict[str, Any]) -> tuple[str, str, str] | None:
    to = fields.get("to")
    if not to:
        return "10004", "Missing required parameter", "The 'to' parameter is required."
    if not isinstance(to, str) or not E164.match(to):
        return "40310", "Invalid 'to' address", f"The 'to' address {to} is invalid."
    if not (fields.get("from") or fields.get("messaging_profile_id")):
        return "10004", "Missing required parameter", "'from' or 'messaging_profile_id'."
    if not fields.get("text"):
        return "40316", "No content provided for message", "Provide text or media_urls."
    return None


def _queued(fields: dict[str, Any]) -> dict[str, Any]:
    sender = fields.get("from") or "+14155550999"
    return {
        "record_type": "message",
        "direction": "outbound",
        "id": str(uuid.uuid4()),
        "type": "SMS",
        "messaging_profile_id": fields.get("messaging_profile_id", str(uuid.uuid4())),
        "organization_id": str(uuid.uuid4()),
        "from": {"phone_number": sender, "carrier": "TELNYX LLC", "line_type": "VoIP"},
        "to": [
            {
                "phone_number": fields["to"],
                "status": "queued",
                "carrier": "T-MOBILE USA, INC.",
                "line_type": "Wireless",
            }
        ],
        "cc": [],
        "text": fields["text"],
        "media": [],
        "webhook_url": fields.get("webhook_url"),
        "webhook_failover_url": fields.get("webhook_failover_url"),
        "encoding": "GSM-7",
        "parts": segments.count(fields["text"]),
        "tags": [],
        "cost": None,
        "received_at": _now(),
        "sent_at": None,
        "completed_at": None,
        "valid_until": None,
        "errors": [],
    }


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds")


def _error(
    status: int,
    code: str,
    title: str,
    detail: str | None = None,
    headers: dict[str, str] | None = None,
) -> web.Response:
    error: dict[str, Any] = {"code": code, "title": title}
    if detail:
        error["detail"] = detail
    return web.json_response({"errors": [error]}, status=status, headers=headers)
