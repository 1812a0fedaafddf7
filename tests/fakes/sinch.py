"""A Sinch SMS REST API (``POST /xms/v1/{service_plan_id}/batches``) on loopback, and
the signed delivery reports Sinch sends.

It checks what Sinch checks before creating a batch: the Bearer token and the service
plan (401 ``unauthorized``), JSON (400 ``syntax_invalid_json``), ``to`` and ``body``
present (400 ``syntax_constraint_violation``), each ``to`` an MSISDN (400
``syntax_invalid_parameter_format`` naming ``to[n]``), and a callback URL when
delivery reports are asked for (403 ``missing_callback_url``). A created batch is 201
with the batch object. ``fail(to, status, code)`` answers sends to ``to`` with
``{"code", "text"}`` instead.

``recipient_report`` builds the per-recipient delivery report of a batch the fake
created, and ``signed`` signs a report the way Sinch signs callbacks.
"""

from __future__ import annotations

import json
import re
import secrets
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from aiohttp import web

from smsrelay.providers.base import Webhook
from smsrelay.providers.sinch import sign
from tests.fakes.base import LoopbackFake

SERVICE_PLAN_ID = "f0a1b2c3d4e5f60718293a4b5c6d7e8f"
API_TOKEN = "fake-sinch-api-token-1b7e"
WEBHOOK_SECRET = "fake-sinch-webhook-secret-4c2a"
BATCHES_PATH = "/xms/v1/{plan}/batches"
RECEIPT_URL = "https://relay.example.com/receipts/sinch"
_MSISDN = re.compile(r"^\+?[1-9]\d{6,14}$")
_ULID = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"


@dataclass
class SinchFake(LoopbackFake):
    """The fake server; ``service_plan_id``/``api_token`` are what it accepts."""

    service_plan_id: str = SERVICE_PLAN_ID
    api_token: str = API_TOKEN
    webhook_secret: str = WEBHOOK_SECRET
    batches: dict[str, dict[str, Any]] = field(default_factory=dict)

    def routes(self, app: web.Application) -> None:
        app.router.add_post(BATCHES_PATH, self._batches)

    async def _batches(self, request: web.Request) -> web.Response:
        return await self.answer_json(
            request, _error(400, "syntax_invalid_json", "Bad JSON"), self._answer
        )

    def _answer(self, request: web.Request, batch: dict[str, Any]) -> web.Response:
        authorised = request.headers.get("Authorization") == f"Bearer {self.api_token}"
        if not authorised or request.match_info["plan"] != self.service_plan_id:
            return _error(401, "unauthorized", "Unauthorized")
        problem = _invalid(batch)
        if problem is not None:
            return _error(*problem)
        failure = next(filter(None, map(self.failure_for, batch["to"])), None)
        if failure is not None:
            headers = failure.headers()
            return _error(failure.status, failure.code, failure.message, headers)
        created = self._created(batch)
        self.batches[created["id"]] = created
        return web.json_response(created, status=201)

    def _created(self, batch: dict[str, Any]) -> dict[str, Any]:
        now = datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
        return {
            "id": "01" + "".join(secrets.choice(_ULID) for _ in range(24)),
            "to": batch["to"],
            "from": batch.get("from", "12345"),
            "type": "mt_text",
            "body": batch["body"],
            "canceled": False,
            "created_at": now,
            "modified_at": now,
            "delivery_report": batch.get("delivery_report", "none"),
            "flash_message": False,
            **{k: batch[k] for k in ("client_reference", "callback_url") if k in batch},
        }

    def recipient_report(
        self, batch_id: str, status: str = "Delivered", code: int = 0, parts: int | None = 1
    ) -> bytes:
        """The body of the per-recipient delivery report Sinch posts for ``batch_id``."""
        batch = self.batches[batch_id]
        report: dict[str, Any] = {
            "type": "recipient_delivery_report_sms",
            "batch_id": batch_id,
            "recipient": batch["to"][0],
            "code": code,
            "status": status,
            "at": "2026-03-01T12:00:00.250Z",
            "operator_status_at": "2026-03-01T12:00:00Z",
            "encoding": "GSM",
        }
        if "client_reference" in batch:
            report["client_reference"] = batch["client_reference"]
        if parts is not None:
            report["number_of_message_parts"] = parts
        return json.dumps(report).encode()

    def signed(
        self,
        body: bytes,
        timestamp: float | None = None,
        secret: str | None = None,
        url: str = RECEIPT_URL,
    ) -> Webhook:
        """``body`` as Sinch posts it, signed at ``timestamp`` (default: now)."""
        return signed_report(body, secret or self.webhook_secret, timestamp, url)


def signed_report(
    body: bytes, secret: str, timestamp: float | None = None, url: str = RECEIPT_URL
) -> Webhook:
    """A callback carrying ``body`` with Sinch's four signature headers."""
    stamp = str(int(time.time() if timestamp is None else timestamp))
    nonce = "01" + "".join(secrets.choice(_ULID) for _ in range(24))
    headers = {
        "content-type": "application/json",
        "x-sinch-webhook-signature": sign(secret, body, nonce, stamp),
        "x-sinch-webhook-signature-timestamp": stamp,
        "x-sinch-webhook-signature-nonce": nonce,
        "x-sinch-webhook-signature-algorithm": "HmacSHA256",
    }
    return Webhook("POST", url, headers, body)


def _invalid(batch: dict[str, Any]) -> tuple[int, str, str] | None:
    to, body = batch.get("to"), batch.get("body")
    if not isinstance(to, list) or not to or not isinstance(body, str) or not body:
        return 400, "syntax_constraint_violation", "The 'to' and 'body' fields are required."
    for index, number in enumerate(to):
        if not isinstance(number, str) or not _MSISDN.match(number):
            text = f"The format of parameter 'to[{index}]' is invalid; value '{number}' is not a valid MSISDN or group ID."
            return 400, "syntax_invalid_parameter_format", text
    if batch.get("delivery_report", "none") != "none" and not batch.get("callback_url"):
        return 403, "missing_callback_url", "Requesting delivery report without any callback URL."
    return None


def _error(
    status: int, code: str, text: str, headers: dict[str, str] | None = None
) -> web.Response:
    return web.json_response({"code": code, "text": text}, status=status, headers=headers)
