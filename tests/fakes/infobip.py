"""An Infobip SMS API v3 (``POST /sms/3/messages``) on loopback, and the delivery
reports Infobip posts.

It checks what Infobip checks: ``Authorization: App <key>`` (401 ``E401``), JSON and
the envelope's shape (400 ``E400`` with ``violations``: no messages, no destinations,
no text). A destination that is not a plausible international number is not an HTTP
error: the 200 answer gives that message the status ``REJECTED_DESTINATION``, as Infobip
does. Taken messages are ``PENDING_ACCEPTED``; ``details.messageCount`` is present when
``options.includeSmsCountInResponse`` asked for it.

``fail(to, status, code)`` answers sends to ``to`` with an ``ApiError`` of that HTTP
status; ``fail(to, 200, "REJECTED_…")`` keeps the 200 and gives the message that status.
``delivery_report`` builds the report of a message the fake took, with Infobip's own
timestamp format (``+0100``, no colon).
"""

from __future__ import annotations

import base64
import json
import re
import secrets
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from smsrelay import segments
from smsrelay.providers.base import Webhook
from tests.fakes.base import Failure, LoopbackFake

API_KEY = "0123456789abcdef0123456789abcdef-fake-infobip-key"
RECEIPT_URL = "https://relay.example.com/receipts/infobip"
_DESTINATION = re.compile(r"^[1-9]\d{6,14}$")

STATUSES: dict[str, tuple[int, str, int]] = {
    "PENDING_ACCEPTED": (1, "PENDING", 26),
    "PENDING_WAITING_DELIVERY": (1, "PENDING", 3),
    "UNDELIVERABLE_NOT_DELIVERED": (2, "UNDELIVERABLE", 9),
    "DELIVERED_TO_OPERATOR": (3, "DELIVERED", 2),
    "DELIVERED_TO_HANDSET": (3, "DELIVERED", 5),
    "EXPIRED_EXPIRED": (4, "EXPIRED", 15),
    "REJECTED_NETWORK": (5, "REJECTED", 6),
    "REJECTED_PREFIX_MISSING": (5, "REJECTED", 8),
    "REJECTED_DND": (5, "REJECTED", 10),
    "REJECTED_SOURCE": (5, "REJECTED", 11),
    "REJECTED_NOT_ENOUGH_CREDITS": (5, "REJECTED", 12),
    "REJECTED_SENDER": (5, "REJECTED", 13),
    "REJECTED_DESTINATION_BLOCKLISTED": (5, "REJECTED", 14),
    "REJECTED_PREPAID_PACKAGE_EXPIRED": (5, "REJECTED", 17),
    "REJECTED_DESTINATION_NOT_REGISTERED": (5, "REJECTED", 18),
    "REJECTED_ROUTE_NOT_AVAILABLE": (5, "REJECTED", 19),
    "REJECTED_FLOODING_FILTER": (5, "REJECTED", 20),
    "REJECTED_SYSTEM_ERROR": (5, "REJECTED", 21),
    "REJECTED_DUPLICATE_MESSAGE_ID": (5, "REJECTED", 23),
    "REJECTED_INVALID_UDH": (5, "REJECTED", 24),
    "REJECTED_MESSAGE_TOO_LONG": (5, "REJECTED", 25),
    "MISSING_TO": (5, "REJECTED", 51),
    "REJECTED_DESTINATION": (5, "REJECTED", 52),
    "REJECTED_INVALID_DESTINATION": (5, "REJECTED", 52),
    "SIGNALS_BLOCKED": (5, "REJECTED", 87),
    "UNDELIVERABLE_REJECTED_PLATFORM": (5, "REJECTED", 100),
}
"""Status name → (groupId, groupName, id), from Infobip's status code reference."""


@dataclass
class InfobipFake(LoopbackFake):
    """The fake server; ``api_key`` is the key it accepts."""

    api_key: str = API_KEY
    messages: dict[str, dict[str, Any]] = field(default_factory=dict)

    def routes(self, app: web.Application) -> None:
        app.router.add_post("/sms/3/messages", self._messages)

    async def _messages(self, request: web.Request) -> web.Response:
        return await self.answer_json(
            request, _api_error(400, "E400", [("body", "bad JSON")]), self._answer
        )

    def _answer(self, request: web.Request, envelope: dict[str, Any]) -> web.Response:
        if request.headers.get("Authorization") != f"App {self.api_key}":
            return _api_error(401, "E401", [])
        violations = _violations(envelope)
        if violations:
            return _api_error(400, "E400", violations)
        failure = self._failure(envelope)
        if failure is not None and failure.status != 200:
            # A 400 configured for a number is about that number.
            to = ("messages[0].destinations[0].to", failure.message)
            violations = [to] if failure.status == 400 else []
            headers = failure.headers()
            return _api_error(failure.status, failure.code, violations, failure.message, headers)
        return web.json_response(self._taken(envelope, failure))

    def _failure(self, envelope: dict[str, Any]) -> Failure | None:
        destinations = [d for m in envelope["messages"] for d in m["destinations"]]
        return next(filter(None, (self.failure_for(str(d.get("to"))) for d in destinations)), None)

    def _taken(self, envelope: dict[str, Any], failure: Failure | None) -> dict[str, Any]:
        counted = bool(envelope.get("options", {}).get("includeSmsCountInResponse"))
        listed = []
        for message in envelope["messages"]:
            for destination in message["destinations"]:
                listed.append(self._result(message, destination, failure, counted))
        return {"bulkId": secrets.token_hex(10), "messages": listed}

    def _result(
        self,
        message: dict[str, Any],
        destination: dict[str, Any],
        failure: Failure | None,
        counted: bool,
    ) -> dict[str, Any]:
        to = str(destination["to"])
        name = failure.code if failure else "PENDING_ACCEPTED"
        if not _DESTINATION.match(to):
            name = "REJECTED_DESTINATION"
        message_id = destination.get("messageId") or secrets.token_hex(16)
        result: dict[str, Any] = {
            "messageId": message_id,
            "status": status_object(name, failure.message if failure else None),
            "destination": to,
        }
        if counted:
            result["details"] = {"messageCount": segments.count(message["content"]["text"])}
        if name == "PENDING_ACCEPTED":
            self.messages[message_id] = {**result, "sender": message.get("sender", "InfoSMS")}
        return result

    def delivery_report(
        self,
        message_id: str,
        status: str = "DELIVERED_TO_HANDSET",
        error: tuple[int, str, bool] = (0, "NO_ERROR", False),
    ) -> bytes:
        """The body of the report Infobip posts about ``message_id`` reaching ``status``."""
        taken = self.messages[message_id]
        error_id, error_name, permanent = error
        result = {
            "bulkId": "BULK-ID-123-xyz",
            "price": {"pricePerMessage": 0.01, "currency": "EUR"},
            "status": status_object(status),
            "error": {
                "groupId": 0 if error_id == 0 else 1,
                "groupName": "OK" if error_id == 0 else "HANDSET_ERRORS",
                "id": error_id,
                "name": error_name,
                "description": error_name.replace("_", " ").capitalize(),
                "permanent": permanent,
            },
            "messageId": message_id,
            "to": taken["destination"],
            "sender": taken["sender"],
            "sentAt": "2026-03-01T12:59:59.100+0100",
            "doneAt": "2026-03-01T13:00:00.250+0100",
            "messageCount": taken.get("details", {}).get("messageCount", 1),
        }
        return json.dumps({"results": [result]}).encode()


def status_object(name: str, description: str | None = None) -> dict[str, Any]:
    """Infobip's ``status`` object for the status ``name``."""
    group_id, group_name, status_id = STATUSES.get(name, (5, "REJECTED", 999))
    return {
        "groupId": group_id,
        "groupName": group_name,
        "id": status_id,
        "name": name,
        "description": description or name.replace("_", " ").capitalize(),
    }


def report_webhook(body: bytes, headers: dict[str, str] | None = None) -> Webhook:
    """A report as Infobip posts it, with ``headers`` (e.g. the shared secret)."""
    return Webhook(
        "POST", RECEIPT_URL, {"content-type": "application/json", **(headers or {})}, body
    )


def basic_auth(username: str, password: str) -> dict[str, str]:
    """The ``authorization`` header of HTTP Basic credentials."""
    encoded = base64.b64encode(f"{username}:{password}".encode()).decode()
    return {"authorization": f"Basic {encoded}"}


def _violations(envelope: dict[str, Any]) -> list[tuple[str, str]]:
    messages = envelope.get("messages")
    if not isinstance(messages, list) or not messages:
        return [("messages", "must not be empty")]
    found = []
    for i, message in enumerate(messages):
        if not isinstance(message, dict) or not message.get("destinations"):
            found.append((f"messages[{i}].destinations", "must not be empty"))
        content = message.get("content") if isinstance(message, dict) else None
        if not isinstance(content, dict) or not content.get("text"):
            found.append((f"messages[{i}].content.text", "must not be blank"))
    return found


def _api_error(
    status: int,
    code: str,
    violations: list[tuple[str, str]],
    description: str | None = None,
    headers: dict[str, str] | None = None,
) -> web.Response:
    payload = {
        "errorCode": code,
        "description": description or "Request cannot be processed.",
        "action": "Check the syntax, violations and adjust the request.",
        "violations": [{"property": p, "violation": v} for p, v in violations],
        "resources": [],
    }
    return web.json_response(payload, status=status, headers=headers)
