"""A Vonage SMS API (``POST /sms/json``) on loopback, and the signed DLRs Vonage sends.

It answers the way Vonage does: HTTP 200 with one ``messages`` entry per SMS part, each
with its own ``status`` ("0" accepted, else an ``x-errors`` code and ``error-text``). It
checks what Vonage checks before accepting: ``api_key``/``api_secret`` (status 4),
``from``/``to``/``text`` present (status 2), ``to`` digits only (status 3).
``fail(to, status=200, code="7")`` makes sends to ``to`` refused with that status;
a non-200 ``status`` answers with that HTTP status instead.

``signed_receipt`` builds a delivery receipt as Vonage signs it, for receipt tests.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import re
import secrets
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl, urlencode

from aiohttp import web

from smsrelay import segments
from smsrelay.providers.base import Webhook
from tests.fakes.base import LoopbackFake

API_KEY = "abcd1234"  # Vonage keys are 8 characters
API_SECRET = "fake-vonage-secret-9c1f"
SIGNATURE_SECRET = "fake-vonage-signature-secret-7d2e"
_DIGITS = re.compile(r"^\d{7,15}$")


@dataclass
class VonageFake(LoopbackFake):
    """The fake server; ``api_key``/``api_secret`` are the credentials it accepts."""

    api_key: str = API_KEY
    api_secret: str = API_SECRET

    def routes(self, app: web.Application) -> None:
        app.router.add_post("/sms/json", self._sms)

    async def _sms(self, request: web.Request) -> web.Response:
        body = await request.read()
        form = dict(parse_qsl(body.decode(errors="replace"), keep_blank_values=True))
        return self.record(request, body, form, self._answer(form))

    def _answer(self, form: dict[str, str]) -> web.Response:
        if not form.get("api_key") or not form.get("api_secret"):
            return _refused("2", "Missing api_key")
        if (form["api_key"], form["api_secret"]) != (self.api_key, self.api_secret):
            return _refused("4", "Bad Credentials")
        for name in ("from", "to", "text"):
            if not form.get(name):
                return _refused("2", f"Missing {name} param")
        if not _DIGITS.match(form["to"]):
            return _refused("3", f"Invalid to address: {form['to']}")
        failure = self.failure_for(form["to"])
        if failure is not None and failure.status != 200:
            headers = failure.headers()
            return web.Response(status=failure.status, text=failure.message, headers=headers)
        if failure is not None:
            return _refused(failure.code, failure.message)
        return web.json_response(_accepted(form))


def _accepted(form: dict[str, str]) -> dict[str, Any]:
    parts = segments.count(form["text"])
    message = {
        "to": form["to"],
        "status": "0",
        "remaining-balance": "15.53590000",
        "message-price": "0.03330000",
        "network": "23410",
    }
    if "client-ref" in form:
        message["client-ref"] = form["client-ref"]
    listed = [{**message, "message-id": secrets.token_hex(8).upper()} for _ in range(parts)]
    return {"message-count": str(parts), "messages": listed}


def _refused(status: str, text: str) -> web.Response:
    payload = {"message-count": "1", "messages": [{"status": status, "error-text": text}]}
    return web.json_response(payload)


def sign(params: dict[str, str], key: str, method: str = "sha256") -> str:
    """Vonage's ``sig`` for ``params``: upper-case hex, as Vonage sends it."""
    text = "".join(
        f"&{k}={v.replace('&', '_').replace('=', '_')}" for k, v in sorted(params.items())
    )
    if method == "md5hash":
        return hashlib.md5((text + key).encode()).hexdigest().upper()
    return hmac.new(key.encode(), text.encode(), method).hexdigest().upper()


def dlr(message_id: str, status: str = "delivered", **extra: str) -> dict[str, str]:
    """The parameters of a delivery receipt, shaped like the spec's DeliveryReceipt."""
    return {
        "msisdn": "447700900000",
        "to": "AcmeInc",
        "network-code": "23410",
        "messageId": message_id,
        "price": "0.03330000",
        "status": status,
        "scts": "2001011400",
        "err-code": "0",
        "api-key": API_KEY,
        "message-timestamp": "2020-01-01 14:00:00",
        **extra,
    }


def signed_receipt(
    params: dict[str, str],
    timestamp: float,
    key: str = SIGNATURE_SECRET,
    method: str = "sha256",
    encoding: str = "json",
    url: str = "https://relay.example.com/receipts/vonage",
) -> Webhook:
    """``params`` signed at ``timestamp`` and sent as JSON, form or GET query."""
    signed = {**params, "timestamp": str(int(timestamp)), "nonce": secrets.token_hex(8)}
    signed["sig"] = sign(signed, key, method)
    if encoding == "get":
        return Webhook("GET", f"{url}?{urlencode(signed)}", {}, b"", signed)
    if encoding == "form":
        headers = {"content-type": "application/x-www-form-urlencoded"}
        return Webhook("POST", url, headers, urlencode(signed).encode())
    return Webhook("POST", url, {"content-type": "application/json"}, json.dumps(signed).encode())
