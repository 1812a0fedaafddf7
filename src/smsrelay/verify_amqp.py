"""Verifications and feedback over AMQP, for services that speak only AMQP.

Requests go to the exchange ``sms`` with routing key ``sms.verify.start`` (a
``StartVerification``), ``sms.verify.check`` (``{"id", "code"}``) or
``sms.verify.feedback`` (``{"id": message id}``), land in the quorum queue
``sms.verify`` and are answered, when the request names a ``reply_to``, on the default
exchange with the request's ``correlation_id``: the HTTP API's answer body, or
``{"error": {"kind", "reason", "retry_after"}}``. Each request is answered once and
acknowledged (a caller that got no answer asks again: a check costs an attempt, so ask
only after a timeout). The rules are ``smsrelay.otp.service``'s, as over HTTP.
"""

from __future__ import annotations

import contextlib
import json
from typing import Any

import aio_pika
from aio_pika.abc import (
    AbstractChannel,
    AbstractExchange,
    AbstractIncomingMessage,
    AbstractQueue,
    AbstractRobustConnection,
)
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from smsrelay import brokers, publish_time
from smsrelay import topology as t
from smsrelay.errors import InvalidRequest
from smsrelay.guard import Guard
from smsrelay.logging import get_logger
from smsrelay.models import ID_PATTERN, SendRequest, decode_json
from smsrelay.otp.service import (
    CODE_PATTERN,
    VERIFICATION_ID,
    RefusalKind,
    Refused,
    StartVerification,
    VerificationService,
)
from smsrelay.settings import Settings
from smsrelay.store import Acceptance, SqlStore
from smsrelay.store.verifications import VerificationStore

log = get_logger(__name__)

MAX_REQUEST_BYTES = 4096
PREFETCH = 20


class CheckRequest(BaseModel):
    """``sms.verify.check``: the verification and the code the user typed."""

    model_config = ConfigDict(extra="forbid")

    id: str = Field(pattern=VERIFICATION_ID)
    code: str = Field(pattern=CODE_PATTERN)


class FeedbackRequest(BaseModel):
    """``sms.verify.feedback``: the message whose code was used."""

    model_config = ConfigDict(extra="forbid")

    id: str = Field(pattern=ID_PATTERN)


class VerifyServer:
    """Consumes ``sms.verify`` on its own connection and answers through the service."""

    def __init__(
        self, url: str, store: SqlStore, settings: Settings, guard: Guard | None = None
    ) -> None:
        self.url = url
        self.store = store
        self.settings = settings
        self._connection: AbstractRobustConnection | None = None
        self._channel: AbstractChannel | None = None
        self._exchange: AbstractExchange | None = None
        self._queue: AbstractQueue | None = None
        self._tag: str | None = None
        self.service = VerificationService(
            VerificationStore(store),
            settings,
            self._send,
            converted=guard.converted if guard is not None else None,
        )

    async def start(self) -> None:
        """Connect, declare, consume."""
        self._connection = await brokers.connect(self.url)
        self._channel = await self._connection.channel(publisher_confirms=True)
        await self._channel.set_qos(prefetch_count=PREFETCH)
        self._exchange = await t.declare_send_topology(self._channel)
        self._queue = await self._channel.get_queue(t.VERIFY_QUEUE)
        self._tag = await self._queue.consume(self._on_message)

    async def stop(self) -> None:
        """Stop consuming and close the connection."""
        if self._queue is not None and self._tag is not None:
            with contextlib.suppress(Exception):
                await self._queue.cancel(self._tag)
        if self._connection is not None:
            await self._connection.close()
            self._connection = None

    async def _send(self, message: SendRequest) -> None:
        # As POST /v1/messages: recorded before publishing, so a GET finds it.
        digest = message.digest(self.settings.request_digest_key())
        try:
            known = await self.store.accept(message, digest)
        except Exception as exc:
            log.warning("accept_failed", id=message.id, error=type(exc).__name__)
            raise Refused(
                RefusalKind.UNAVAILABLE, "the store did not take the code's message"
            ) from None
        if known is Acceptance.CONFLICT:
            raise Refused(RefusalKind.CONFLICT, "the code's message id is taken")
        if known is Acceptance.KNOWN:
            return
        assert self._exchange is not None
        headers, timestamp = publish_time.stamp()
        try:
            await self._exchange.publish(
                aio_pika.Message(
                    message.to_wire(),
                    headers=headers,
                    content_type="application/json",
                    delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
                    message_id=message.id,
                    timestamp=timestamp,
                ),
                routing_key=t.OTP_ROUTING_KEY,
                mandatory=True,
            )
        except Exception as exc:
            log.warning("publish_failed", id=message.id, error=type(exc).__name__)
            if known is Acceptance.NEW:  # as the HTTP API: forget what was not published
                with contextlib.suppress(Exception):
                    await self.store.withdraw(message.id)
            raise Refused(
                RefusalKind.UNAVAILABLE, "the broker did not take the code's message"
            ) from None

    async def _on_message(self, message: AbstractIncomingMessage) -> None:
        async with message.process(requeue=False, ignore_processed=True):
            answer = await self.answer(message.routing_key or "", message.body)
            if message.reply_to and self._channel is not None:
                await self._channel.default_exchange.publish(
                    aio_pika.Message(
                        json.dumps(answer).encode(),
                        content_type="application/json",
                        correlation_id=message.correlation_id,
                    ),
                    routing_key=message.reply_to,
                )

    async def answer(self, routing_key: str, body: bytes) -> dict[str, Any]:
        """The answer to one request: the HTTP API's body, or an ``error``."""
        try:
            data = _decode(body)
            if routing_key == t.VERIFY_START_KEY:
                started = await self.service.start(StartVerification.model_validate(data))
                return {
                    "id": started.id,
                    "status": "pending",
                    "to": started.to,
                    "expires_at": started.expires_at.isoformat(),
                    "message_id": started.message_id,
                    "sends": started.sends,
                }
            if routing_key == t.VERIFY_CHECK_KEY:
                check = CheckRequest.model_validate(data)
                checked = await self.service.check(check.id, check.code)
                return {
                    "id": check.id,
                    "status": checked.result.value,
                    "attempts_left": checked.attempts_left,
                }
            if routing_key == t.FEEDBACK_KEY:
                feedback = FeedbackRequest.model_validate(data)
                await self.service.feedback(feedback.id, "amqp")
                return {"id": feedback.id, "converted": True}
            raise Refused(RefusalKind.INVALID, f"unknown routing key {routing_key[:64]!r}")
        except ValidationError as exc:
            return _error(Refused(RefusalKind.INVALID, _first_error(exc)))
        except Refused as exc:
            return _error(exc)
        except Exception as exc:  # the publish of the code's message, most likely
            log.warning("verify_request_failed", error=type(exc).__name__)
            return _error(Refused(RefusalKind.UNAVAILABLE, "retry later", retry_after=5))


def _decode(body: bytes) -> object:
    if len(body) > MAX_REQUEST_BYTES:
        raise Refused(RefusalKind.INVALID, f"the request is over {MAX_REQUEST_BYTES} bytes")
    try:
        return decode_json(body)
    except InvalidRequest as exc:
        raise Refused(RefusalKind.INVALID, f"the body is not JSON: {exc.reason}") from None


def _first_error(exc: ValidationError) -> str:
    # Field and message only: pydantic's text quotes the input, which may be a code.
    first = exc.errors(include_input=False)[0]
    where = ".".join(str(part) for part in first.get("loc", ()))
    return f"field {where!r}: {first.get('msg', 'invalid')}"


def _error(exc: Refused) -> dict[str, Any]:
    return {"error": {"kind": exc.kind.value, "reason": exc.reason, "retry_after": exc.retry_after}}
