"""The bare receipts endpoint: a raw ASGI app that only checks ``X-Twilio-Signature``.

``python -m bench.receipts_bare PORT AUTH_TOKEN PUBLIC_URL``. It runs under the same
server as ``smsrelay api`` (uvicorn with smsrelay's guarded h11 protocol, no access
log), reads the form body, computes Twilio's HMAC-SHA1 over the public URL and the
sorted parameters, and answers 204 (401 if it does not verify). No framework, no
store, no events: what is left of a receipt when smsrelay does nothing of its own.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import sys
from typing import Any
from urllib.parse import parse_qsl

import uvicorn

from smsrelay.api.limits import guarded_protocol


def make_app(token: bytes, public: str) -> Any:
    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        body = b""
        more = True
        while more:
            message = await receive()
            body += message.get("body", b"")
            more = message.get("more_body", False)
        given = dict(scope["headers"]).get(b"x-twilio-signature", b"").decode()
        pairs = sorted(parse_qsl(body.decode(), keep_blank_values=True))
        payload = public + scope["path"] + "".join(k + v for k, v in pairs)
        digest = hmac.new(token, payload.encode(), hashlib.sha1).digest()
        ok = hmac.compare_digest(base64.b64encode(digest).decode(), given)
        await send({"type": "http.response.start", "status": 204 if ok else 401, "headers": []})
        await send({"type": "http.response.body", "body": b""})

    return app


def main(argv: list[str]) -> None:
    port, token, public = argv
    uvicorn.run(
        make_app(token.encode(), public),
        host="127.0.0.1",
        port=int(port),
        log_level="info",
        access_log=False,
        http=guarded_protocol(10.0, 30.0),
        h11_max_incomplete_event_size=16 * 1024,
    )


if __name__ == "__main__":
    main(sys.argv[1:])
