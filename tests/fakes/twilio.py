"""A Twilio Messages API on loopback, for tests and for other processes.

In a test::

    async with TwilioFake() as fake:
        fake.fail("+14155550100", status=400, code=21610)
        ...  # point the adapter at fake.url with fake.account_sid / fake.auth_token
        assert fake.received[0].form["To"] == "+14155550123"

As a process: ``python -m tests.fakes.twilio --port 8099`` prints ``listening on <url>``
once it accepts connections, then serves until SIGINT/SIGTERM. Its control endpoints:
``GET /_fake/received`` (the form of every Messages call, with ``_status`` the HTTP status
it got), ``POST /_fake/fail`` (JSON ``{"to", "status", "code", "message"?,
"retry_after"?}``) and ``POST /_fake/reset``.

It checks what Twilio checks before queueing: Basic auth (401, code 20003), the account
in the path (404, 20404), To (21604, 21211 when not E.164), a sender (21603), a body
(21602, 21617 over 1600 characters).
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import binascii
import re
import secrets
import signal
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.utils import format_datetime
from types import TracebackType
from typing import Any
from urllib.parse import parse_qsl

from aiohttp import web

from smsrelay import segments

ACCOUNT_SID = "AC" + "0123456789abcdef" * 2
AUTH_TOKEN = "fake-twilio-auth-token-5f0e3c"
MESSAGES_PATH = "/2010-04-01/Accounts/{sid}/Messages.json"
_E164 = re.compile(r"^\+[1-9]\d{6,14}$")


@dataclass(frozen=True)
class Failure:
    """What the fake answers for one destination number instead of a 201."""

    status: int
    code: int
    message: str = "Configured failure"
    retry_after: float | None = None


@dataclass(frozen=True)
class Received:
    """One request the fake received, and the status it answered with."""

    method: str
    path: str
    headers: dict[str, str]
    content_type: str
    body: bytes
    form: dict[str, str]
    status: int
    answer: bytes


@dataclass
class TwilioFake:
    """The fake server; start it with ``async with`` and read ``url``."""

    account_sid: str = ACCOUNT_SID
    auth_token: str = AUTH_TOKEN
    host: str = "127.0.0.1"
    port: int = 0
    latency: float = 0.0
    received: list[Received] = field(default_factory=list)
    failures: dict[str, Failure] = field(default_factory=dict)
    _runner: web.AppRunner | None = field(default=None, init=False, repr=False)
    _url: str = field(default="", init=False, repr=False)

    @property
    def url(self) -> str:
        """Base URL, e.g. ``http://127.0.0.1:40123``; set once started."""
        if not self._url:
            raise RuntimeError("TwilioFake is not started")
        return self._url

    def fail(
        self,
        to: str,
        status: int,
        code: int,
        message: str | None = None,
        retry_after: float | None = None,
    ) -> None:
        """Answer sends to ``to`` with this HTTP status and Twilio error code."""
        text = message or f"Configured failure {code}"
        self.failures[to] = Failure(status, code, text, retry_after)

    def reset(self) -> None:
        """Forget received requests and configured failures."""
        self.received.clear()
        self.failures.clear()

    async def start(self) -> None:
        """Listen on ``host:port`` (port 0 picks a free one)."""
        self._runner = web.AppRunner(self._app(), access_log=None)
        await self._runner.setup()
        await web.TCPSite(self._runner, self.host, self.port).start()
        host, port = self._runner.addresses[0][:2]
        self._url = f"http://{host}:{port}"

    async def stop(self) -> None:
        """Stop listening."""
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def __aenter__(self) -> TwilioFake:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()

    def _app(self) -> web.Application:
        app = web.Application()
        app.router.add_get("/_fake/received", self._list_received)
        app.router.add_post("/_fake/fail", self._configure_failure)
        app.router.add_post("/_fake/reset", self._reset)
        app.router.add_post(MESSAGES_PATH, self._messages)
        app.router.add_route("*", "/{tail:.*}", self._unknown)
        return app

    async def _messages(self, request: web.Request) -> web.Response:
        body = await request.read()
        form = dict(parse_qsl(body.decode(errors="replace"), keep_blank_values=True))
        if self.latency:
            await asyncio.sleep(self.latency)
        response = self._answer(request, form)
        self._record(request, body, form, response)
        return response

    async def _unknown(self, request: web.Request) -> web.Response:
        body = await request.read()
        response = _error(404, 20404, f"The requested resource {request.path} was not found")
        self._record(request, body, {}, response)
        return response

    def _record(
        self, request: web.Request, body: bytes, form: dict[str, str], response: web.Response
    ) -> None:
        answer = response.body if isinstance(response.body, bytes) else b""
        self.received.append(
            Received(
                request.method,
                request.path,
                dict(request.headers),
                request.content_type,
                body,
                form,
                response.status,
                answer,
            )
        )

    def _answer(self, request: web.Request, form: dict[str, str]) -> web.Response:
        if not self._authorised(request.headers.get("Authorization", "")):
            return _error(
                401, 20003, "Authenticate", {"WWW-Authenticate": 'Basic realm="Twilio API"'}
            )
        if request.match_info["sid"] != self.account_sid:
            return _error(404, 20404, f"The requested resource {request.path} was not found")
        problem = _invalid(form)
        if problem is not None:
            return _error(400, *problem)
        failure = self.failures.get(form["To"])
        if failure is not None:
            return _failure(failure)
        return web.json_response(self._message(form), status=201)

    def _authorised(self, header: str) -> bool:
        scheme, _, encoded = header.partition(" ")
        try:
            credentials = base64.b64decode(encoded, validate=True).decode()
        except (binascii.Error, UnicodeDecodeError):
            return False
        return scheme.lower() == "basic" and credentials == f"{self.account_sid}:{self.auth_token}"

    def _message(self, form: dict[str, str]) -> dict[str, Any]:
        sid = "SM" + secrets.token_hex(16)
        now = format_datetime(datetime.now(UTC))
        uri = f"/2010-04-01/Accounts/{self.account_sid}/Messages/{sid}"
        return {
            "account_sid": self.account_sid,
            "api_version": "2010-04-01",
            "body": form.get("Body", ""),
            "date_created": now,
            "date_sent": None,
            "date_updated": now,
            "direction": "outbound-api",
            "error_code": None,
            "error_message": None,
            "from": form.get("From"),
            "messaging_service_sid": form.get("MessagingServiceSid"),
            "num_media": "0",
            "num_segments": str(segments.count(form.get("Body", ""))),
            "price": None,
            "price_unit": "USD",
            "sid": sid,
            "status": "queued",
            "subresource_uris": {"media": uri + "/Media.json"},
            "to": form["To"],
            "uri": uri + ".json",
        }

    async def _list_received(self, request: web.Request) -> web.Response:
        return web.json_response([{**r.form, "_status": r.status} for r in self.received])

    async def _configure_failure(self, request: web.Request) -> web.Response:
        spec = await request.json()
        self.fail(
            spec["to"], spec["status"], spec["code"], spec.get("message"), spec.get("retry_after")
        )
        return web.json_response({"ok": True})

    async def _reset(self, request: web.Request) -> web.Response:
        self.reset()
        return web.json_response({"ok": True})


def _invalid(form: dict[str, str]) -> tuple[int, str] | None:
    to = form.get("To")
    if not to:
        return 21604, "A 'To' phone number is required."
    if not _E164.match(to):
        return 21211, f"Invalid 'To' Phone Number: {to}"
    if not (form.get("From") or form.get("MessagingServiceSid")):
        return 21603, "A 'From' or 'MessagingServiceSid' parameter is required to send a message."
    if not (form.get("Body") or form.get("MediaUrl") or form.get("ContentSid")):
        return 21602, "Message body is required."
    if len(form.get("Body", "")) > 1600:
        return 21617, "The concatenated message body exceeds the 1600 character limit."
    return None


def _failure(failure: Failure) -> web.Response:
    headers = {}
    if failure.retry_after is not None:
        headers["Retry-After"] = f"{failure.retry_after:g}"
    return _error(failure.status, failure.code, failure.message, headers)


def _error(
    status: int, code: int, message: str, headers: dict[str, str] | None = None
) -> web.Response:
    payload = {
        "code": code,
        "message": message,
        "more_info": f"https://www.twilio.com/docs/errors/{code}",
        "status": status,
    }
    return web.json_response(payload, status=status, headers=headers)


async def _serve(fake: TwilioFake) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    async with fake:
        print(f"listening on {fake.url}", flush=True)
        await stop.wait()


def main(argv: list[str] | None = None) -> None:
    """``python -m tests.fakes.twilio --port N``: serve until SIGINT/SIGTERM."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--account-sid", default=ACCOUNT_SID)
    parser.add_argument("--auth-token", default=AUTH_TOKEN)
    parser.add_argument("--latency-ms", type=float, default=0.0)
    args = parser.parse_args(argv)
    fake = TwilioFake(
        args.account_sid, args.auth_token, args.host, args.port, args.latency_ms / 1000
    )
    asyncio.run(_serve(fake))


if __name__ == "__main__":
    main()
