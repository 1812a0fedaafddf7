"""What one HTTP client may cost the API: time to send its request, bytes held in memory.

Two layers, because uvicorn hands a request to the app only once its headers are in:

- ``guarded_protocol`` (uvicorn's h11 protocol, with two timers): a connection whose
  request headers are not complete within ``header_timeout``, or whose body is not
  complete within ``body_timeout`` after them, is closed. Slowloris clients, trickling a
  byte at a time, are dropped within seconds instead of holding a connection forever.
- ``BodyLimits`` (ASGI middleware): each route's largest body (413), and one byte
  budget for every request body held in memory at once (503 with ``Retry-After`` when
  it is spent). Both refuse as early as ``Content-Length`` allows, otherwise as bytes
  arrive, and answer with ``Connection: close`` since the rest of the body is unread.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from typing import Any

import h11
from starlette.datastructures import Headers
from starlette.exceptions import HTTPException
from starlette.requests import ClientDisconnect
from starlette.types import ASGIApp, Message, Receive, Scope, Send
from uvicorn.protocols.http.h11_impl import H11Protocol

from smsrelay.api.errors import error_response
from smsrelay.logging import get_logger

log = get_logger(__name__)

RETRY_LATER = "5"


class BodyBudget:
    """Bytes of request bodies held at once, across all requests (one event loop)."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.held = 0

    def fits(self, size: int) -> bool:
        """Whether ``size`` more bytes would fit now."""
        return self.held + size <= self.limit

    def take(self, size: int) -> bool:
        """Hold ``size`` bytes if they fit; False (and nothing held) otherwise."""
        if not self.fits(size):
            return False
        self.held += size
        return True

    def give_back(self, size: int) -> None:
        """Release bytes a finished request held."""
        self.held -= size


class BodyLimits:
    """ASGI middleware: per-route body limits and the shared ``BodyBudget`` (see module)."""

    def __init__(
        self,
        app: ASGIApp,
        *,
        budget: BodyBudget,
        max_body: int,
        route_limits: Mapping[str, int] | None = None,
    ) -> None:
        self.app = app
        self.budget = budget
        self.max_body = max_body
        # Path prefix → limit; the longest matching prefix wins.
        self.route_limits = sorted((route_limits or {}).items(), key=lambda kv: -len(kv[0]))

    def limit_for(self, path: str) -> int:
        """The largest body accepted on ``path``."""
        for prefix, limit in self.route_limits:
            if path.startswith(prefix):
                return min(limit, self.max_body)
        return self.max_body

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit = self.limit_for(scope["path"])
        declared = _content_length(scope)
        refusal = None
        if declared is not None and declared > limit:
            refusal = _too_large(limit)
        elif declared is not None and not self.budget.fits(declared):
            refusal = _busy()
        if refusal is not None:
            # Out here no exception handler runs: answer directly, the body unread.
            answer = error_response(refusal.status_code, refusal.detail, headers=refusal.headers)
            await answer(scope, receive, send)
            return
        held = 0

        async def limited() -> Message:
            nonlocal held
            message = await receive()
            if message["type"] == "http.request":
                size = len(message.get("body", b""))
                if held + size > limit:
                    raise _too_large(limit)
                if not self.budget.take(size):
                    raise _busy()
                held += size
            return message

        try:
            await self.app(scope, limited, send)
        except ClientDisconnect:
            # The client went away (or was dropped for being too slow): nobody to answer.
            log.info("client_disconnected", path=scope["path"])
        finally:
            self.budget.give_back(held)


def _too_large(limit: int) -> HTTPException:
    return HTTPException(
        413, f"the request body is over {limit} bytes", headers={"Connection": "close"}
    )


def _busy() -> HTTPException:
    log.warning("body_budget_spent")
    return HTTPException(
        503,
        "too many request bodies at once; retry later",
        headers={"Connection": "close", "Retry-After": RETRY_LATER},
    )


def _content_length(scope: Scope) -> int | None:
    value = Headers(scope=scope).get("content-length", "")
    return int(value) if value.isdigit() else None


def guarded_protocol(header_timeout: float, body_timeout: float) -> type[H11Protocol]:
    """uvicorn's h11 protocol, closing connections that send their request too slowly."""

    class GuardedH11Protocol(H11Protocol):
        _timer: asyncio.TimerHandle | None = None
        _waiting_for: Any = None

        def connection_made(self, transport: asyncio.BaseTransport) -> None:
            super().connection_made(transport)  # type: ignore[arg-type]
            self._watch()

        def connection_lost(self, exc: Exception | None) -> None:
            self._stop()
            super().connection_lost(exc)

        def handle_events(self) -> None:
            super().handle_events()
            self._watch()

        def on_response_complete(self) -> None:
            super().on_response_complete()
            self._watch()

        def _watch(self) -> None:
            """Time the client's current phase: headers, then body; nothing once sent."""
            state = self.conn.their_state
            if state is self._waiting_for:
                return
            self._stop()
            if state is h11.IDLE:
                self._start(state, header_timeout)
            elif state is h11.SEND_BODY:
                self._start(state, body_timeout)

        def _start(self, state: Any, seconds: float) -> None:
            self._waiting_for = state
            self._timer = self.loop.call_later(seconds, self._too_slow, state)

        def _stop(self) -> None:
            if self._timer is not None:
                self._timer.cancel()
            self._timer = None
            self._waiting_for = None

        def _too_slow(self, state: Any) -> None:
            self._timer = None
            if self.conn.their_state is state and not self.transport.is_closing():
                phase = "headers" if state is h11.IDLE else "body"
                log.info("slow_client_dropped", phase=phase)
                self.transport.close()

    return GuardedH11Protocol
