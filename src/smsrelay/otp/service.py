"""Verifications and feedback as one transport-free service, for HTTP and AMQP alike.

``VerificationService`` decides; the HTTP routes (``smsrelay.api.verifications``) and the
AMQP server (``smsrelay.verify_amqp``) only translate its answers and its ``Refused``.
Sending the code is the caller's ``send``: record the request, then publish it on the
OTP lane, as ``POST /v1/messages`` does.
"""

from __future__ import annotations

import secrets
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field

from smsrelay.errors import InvalidRequest
from smsrelay.logging import get_logger
from smsrelay.models import SendRequest, validate_request
from smsrelay.otp import verify
from smsrelay.otp.verify import CheckResult, Verification
from smsrelay.phone import mask
from smsrelay.settings import Settings
from smsrelay.store.verifications import Checked, NewCode, VerificationStore

log = get_logger(__name__)

VERIFICATION_ID = r"^vf-[0-9a-f]{32}$"
CODE_PATTERN = r"^[0-9]{4,10}$"


class StartVerification(BaseModel):
    """Send a code to ``to``; a second start for a number with an open verification resends."""

    model_config = ConfigDict(extra="forbid")

    to: Annotated[str, Field(min_length=1, max_length=32)]
    code_length: Annotated[int, Field(ge=verify.MIN_LENGTH, le=verify.MAX_LENGTH)] = 6
    # Seconds the code is valid (and the SMS may still be sent).
    ttl: Annotated[int, Field(ge=30, le=3600)] = 600
    # The message text with the placeholder {code}; else the locale's built-in text.
    template: Annotated[
        str | None, Field(max_length=verify.MAX_TEMPLATE_CHARS, pattern=r"\{code\}")
    ] = None
    locale: Annotated[str | None, Field(pattern=r"^[A-Za-z]{2}(-[A-Za-z0-9]{2,8})?$")] = None


class CheckCode(BaseModel):
    """The code the user typed, and (over AMQP) the verification it is for."""

    model_config = ConfigDict(extra="forbid")

    code: Annotated[str, Field(pattern=CODE_PATTERN)]


class RefusalKind(StrEnum):
    """Why the service refused (HTTP status in brackets)."""

    INVALID = "invalid"  # 422
    NOT_FOUND = "not_found"  # 404
    ALREADY_APPROVED = "already_approved"  # 409
    CONFLICT = "conflict"  # 409
    LIMITED = "limited"  # 429
    NOT_CONFIGURED = "not_configured"  # 503
    UNAVAILABLE = "unavailable"  # 503


class Refused(Exception):
    """The request was not carried out; ``kind`` says why, ``retry_after`` when to retry."""

    def __init__(
        self,
        kind: RefusalKind,
        reason: str,
        *,
        retry_after: int | None = None,
        field: str | None = None,
    ) -> None:
        super().__init__(reason)
        self.kind = kind
        self.reason = reason
        self.retry_after = retry_after
        self.field = field


@dataclass(frozen=True, slots=True)
class Started:
    """A code was sent (``sends`` counts the first and each resend)."""

    id: str
    to: str
    expires_at: datetime
    message_id: str
    sends: int


# Records and publishes one request; raises Refused when it cannot.
Send = Callable[[SendRequest], Awaitable[None]]
# Tells the pumping guard a message's code was used (smsrelay.guard.Guard.converted).
Converted = Callable[[str], Awaitable[bool]]


class VerificationService:
    """Start, check, feedback: the rules of smsrelay-owned verifications."""

    def __init__(
        self,
        store: VerificationStore,
        settings: Settings,
        send: Send,
        *,
        converted: Converted | None = None,
    ) -> None:
        self.store = store
        self.settings = settings
        self.rules = settings.verification
        self.send = send
        self.converted = converted

    def _key(self) -> bytes:
        key = self.settings.verification_key()
        if key is None:
            raise Refused(RefusalKind.NOT_CONFIGURED, "verification.key is not configured")
        return key

    async def start(self, request: StartVerification) -> Started:
        """Send a new code (or resend one for the number's open verification)."""
        key = self._key()
        now = datetime.now(UTC)
        try:
            probe = validate_request({"id": "probe", "to": request.to, "body": "x"})
        except InvalidRequest as exc:
            raise Refused(RefusalKind.INVALID, exc.reason, field="to") from None
        try:
            current = await self.store.open_for(probe.to, now)
            if current is not None:
                return await self._resend(key, request, current, now)
            since = now - timedelta(seconds=self.rules.window_seconds)
            sent = await self.store.sends_since(probe.to, since)
        except Refused:
            raise
        except Exception as exc:  # any driver error
            raise _unavailable(exc) from None
        if sent >= self.rules.max_sends_per_number:
            log.info("verification_limited", to=mask(probe.to), sent=sent)
            raise Refused(
                RefusalKind.LIMITED,
                "too many codes sent to this number; retry later",
                retry_after=round(self.rules.window_seconds),
            )
        vid = f"vf-{secrets.token_hex(16)}"
        expires = now + timedelta(seconds=request.ttl)
        message, code = _new_code(key, vid, 1, request, probe.to, expires)
        try:
            await self.store.create(
                vid,
                probe.to,
                probe.country,
                code,
                max_attempts=self.rules.max_attempts,
                now=now,
                expires_at=expires,
            )
        except Exception as exc:
            raise _unavailable(exc) from None
        log.info("verification_started", id=vid, to=mask(probe.to))
        await self.send(message)
        return Started(vid, mask(probe.to), expires, message.id, 1)

    async def _resend(
        self, key: bytes, request: StartVerification, current: Verification, now: datetime
    ) -> Started:
        cooldown = self.rules.resend_cooldown
        wait = (current.last_sent_at + timedelta(seconds=cooldown) - now).total_seconds()
        if wait > 0:
            raise Refused(
                RefusalKind.LIMITED,
                "a code was sent to this number moments ago; retry later",
                retry_after=max(1, round(wait)),
            )
        sends = current.sends + 1
        if sends > self.rules.max_sends_per_number:
            raise Refused(RefusalKind.LIMITED, "too many codes sent to this number; retry later")
        message, code = _new_code(key, current.id, sends, request, current.to, current.expires_at)
        earlier = now - timedelta(seconds=cooldown)
        if not await self.store.resend(current.id, code, now=now, sent_before=earlier):
            raise Refused(RefusalKind.CONFLICT, "the verification changed meanwhile; retry")
        log.info("verification_resent", id=current.id, to=mask(current.to), sends=sends)
        await self.send(message)
        return Started(current.id, mask(current.to), current.expires_at, message.id, sends)

    async def check(self, verification_id: str, code: str) -> Checked:
        """Count one attempt and compare; an approval is conversion feedback."""
        key = self._key()
        try:
            checked = await self.store.check(verification_id, key, code, datetime.now(UTC))
        except Exception as exc:
            raise _unavailable(exc) from None
        if checked is None:
            raise Refused(RefusalKind.NOT_FOUND, f"no verification with id {verification_id!r}")
        if checked.already_approved:
            raise Refused(RefusalKind.ALREADY_APPROVED, "this verification was already approved")
        log.info("verification_checked", id=verification_id, result=checked.result.value)
        if checked.result is CheckResult.APPROVED:
            await self._converted(checked.message_id)
        return checked

    async def feedback(self, message_id: str, source: str) -> None:
        """Record that ``message_id``'s code was used (repeats change nothing)."""
        try:
            known = await self.store.record_conversion(message_id, source, datetime.now(UTC))
        except Exception as exc:
            raise _unavailable(exc) from None
        if not known:
            raise Refused(RefusalKind.NOT_FOUND, f"no message with id {message_id!r}")
        await self._converted(message_id)

    async def _converted(self, message_id: str) -> None:
        """Tell the guard; feedback is recorded already, so a guard failure only logs."""
        if self.converted is None:
            return
        try:
            await self.converted(message_id)
        except Exception as exc:  # the store has the conversion; the guard learns less
            log.warning("guard_conversion_lost", id=message_id, error=type(exc).__name__)


def _unavailable(exc: Exception) -> Refused:
    log.warning("verification_store_failed", error=type(exc).__name__)
    return Refused(RefusalKind.UNAVAILABLE, "the store is unavailable; retry later", retry_after=5)


def _new_code(
    key: bytes, vid: str, send: int, request: StartVerification, to: str, expires: datetime
) -> tuple[SendRequest, NewCode]:
    code = verify.generate_code(request.code_length)
    message = validate_request(
        {
            "id": f"{vid}.{send}",
            "to": to,
            "body": verify.render(code, request.template, request.locale),
            "kind": "otp",
            "expires_at": expires.isoformat(),
            "tags": {"verification": vid},
        }
    )
    salt = verify.new_salt()
    return message, NewCode(verify.hash_code(key, salt, code), salt, message.id)
