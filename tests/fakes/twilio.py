"""A Twilio Messages API on loopback, for tests and for other processes.

In a test::

    async with TwilioFake() as fake:
        fake.fail("+14155550100", status=400, code=21610)
        fake.hang("+14155550101")  # accepted and recorded, never answered
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
import secrets
import signal
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import format_datetime
from typing import Any, ClassVar
from urllib.parse import parse_qsl

from aiohttp import web

from smsrelay import segments
from tests.fakes import base
from tests.fakes.base import E164, Failure, LoopbackFake, basic_credentials

ACCOUNT_SID = "AC" + "0123456789abcdef" * 2
AUTH_TOKEN = "fake-twilio-auth-token-5f0e3c"
MESSAGES_PATH = "/2010-04-01/Accounts/{sid}/Messages.json"


@dataclass(frozen=True)
class Received(base.Received):
    """One request the fake received; ``form`` is its parsed form (``fields``)."""

    @property
    def form(self) -> dict[str, str]:
        """The Messages call's form fields."""
        return self.fields


@dataclass
class TwilioFake(LoopbackFake):
    """The fake server; start it with ``async with`` and read ``url``.

    ``fail(to, status, code)`` takes Twilio's integer error code.
    """

    received_type: ClassVar[type[base.Received]] = Received

    account_sid: str = ACCOUNT_SID
    auth_token: str = AUTH_TOKEN
    latency: float = 0.0

    def routes(self, app: web.Application) -> None:
        app.router.add_get("/_fake/received", self._list_received)
        app.router.add_post("/_fake/fail", self._configure_failure)
        app.router.add_post("/_fake/reset", self._reset)
        app.router.add_post(MESSAGES_PATH, self._messages)
        app.router.add_route("*", "/{tail:.*}", self._unknown)

    async def _messages(self, request: web.Request) -> web.Response:
        body = await request.read()
        form = dict(parse_qsl(body.decode(errors="replace"), keep_blank_values=True))
        if self.hangs_for(form.get("To", "")):
            # Taken, then the answer is lost: the client can only time out.
            answer = self.record(request, body, form, self._answer(request, form))
            await self.hold()
            return answer
        if self.latency:
            await asyncio.sleep(self.latency)
        return self.record(request, body, form, self._answer(request, form))

    async def _unknown(self, request: web.Request) -> web.Response:
        body = await request.read()
        response = _error(404, 20404, f"The requested resource {request.path} was not found")
        return self.record(request, body, {}, response)

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
        failure = self.failure_for(form["To"])
        if failure is not None:
            return _failure(failure)
        return web.json_response(self._message(form), status=201)

    def _authorised(self, header: str) -> bool:
        return basic_credentials(header) == f"{self.account_sid}:{self.auth_token}"

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
        listed = [{**r.fields, "_status": r.status} for r in self.received]
        return web.json_response(listed)

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
    if not E164.match(to):
        return 21211, f"Invalid 'To' Phone Number: {to}"
    if not (form.get("From") or form.get("MessagingServiceSid")):
        return 21603, "A 'From' or 'MessagingServiceSid' parameter is required to send a message."
    if not (form.get("Body") or form.get("MediaUrl") or form.get("ContentSid")):
        return 21602, "Message body is required."
    if len(form.get("Body", "")) > 1600:
        return 21617, "The concatenated message body exceeds the 1600 character limit."
    return None


def _failure(failure: Failure) -> web.Response:
    # fail() keeps codes as text; Twilio's are integers on the wire.
    code: int | str = int(failure.code) if failure.code.isdigit() else failure.code
    return _error(failure.status, code, failure.message, failure.headers())


def _error(
    status: int, code: int | str, message: str, headers: dict[str, str] | None = None
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
        host=args.host,
        port=args.port,
        account_sid=args.account_sid,
        auth_token=args.auth_token,
        latency=args.latency_ms / 1000,
    )
    asyncio.run(_serve(fake))


if __name__ == "__main__":
    main()
