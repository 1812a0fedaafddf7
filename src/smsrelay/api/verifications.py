"""``POST /v1/verifications`` (send a code), ``…/{id}/check`` and ``/v1/messages/{id}/feedback``.

smsrelay generates the code (``smsrelay.otp.verify``), sends it as a ``kind: otp``
message through the same path as ``POST /v1/messages`` (recorded, then published on the
OTP lane) and keeps only its keyed salted hash. A code is never logged or returned.
"""

from __future__ import annotations

import secrets
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Path
from pydantic import AwareDatetime, BaseModel, ConfigDict, Field

from smsrelay.api.auth import require_api_key
from smsrelay.api.context import ApiContext, get_context
from smsrelay.api.errors import documented, error_response, field_of
from smsrelay.api.messages import accept_request
from smsrelay.api.schemas import Accepted
from smsrelay.errors import InvalidRequest
from smsrelay.logging import get_logger
from smsrelay.models import ID_PATTERN, SendRequest, validate_request
from smsrelay.otp import verify
from smsrelay.otp.verify import CheckResult, Verification
from smsrelay.phone import mask
from smsrelay.store.verifications import NewCode, VerificationStore

log = get_logger(__name__)

router = APIRouter(tags=["verifications"], dependencies=[Depends(require_api_key)])

VERIFICATION_ID = r"^vf-[0-9a-f]{32}$"


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


class VerificationStarted(BaseModel):
    """A code was sent (``sends`` counts the first and each resend)."""

    id: str
    status: str
    to: str
    expires_at: AwareDatetime
    message_id: str
    sends: int


class CheckCode(BaseModel):
    """The code the user typed."""

    model_config = ConfigDict(extra="forbid")

    code: Annotated[str, Field(pattern=r"^[0-9]{4,10}$")]


class CheckAnswer(BaseModel):
    """approved / denied / expired / too_many_attempts, and the guesses left."""

    id: str
    status: CheckResult
    attempts_left: int


class Feedback(BaseModel):
    """The message's code was used (conversion feedback)."""

    id: str
    converted: bool


def _store(ctx: ApiContext) -> VerificationStore:
    return VerificationStore(ctx.store)


@router.post(
    "/v1/verifications",
    operation_id="startVerification",
    status_code=201,
    response_model=VerificationStarted,
    responses=documented(401, 409, 422, 429, 503),
    summary="Send a verification code",
)
async def start_verification(
    body: StartVerification, ctx: ApiContext = Depends(get_context)
) -> Any:
    """Generate a code, send it as an OTP, keep only its keyed hash (201).

    While the number has an open verification, a new start resends a new code for it
    (the old code stops working) once `resend_cooldown` has passed, else 429. At most
    `max_sends_per_number` codes per number per window (429).
    """
    key = ctx.settings.verification_key()
    if key is None:
        return error_response(503, "verification.key is not configured")
    now = datetime.now(UTC)
    try:
        probe = validate_request({"id": "probe", "to": body.to, "body": "x"})
    except InvalidRequest as exc:
        return error_response(422, exc.reason, field=field_of(exc.reason))
    store = _store(ctx)
    rules = ctx.settings.verification
    try:
        open_one = await store.open_for(probe.to, now)
        if open_one is not None:
            return await _resend(ctx, store, key, body, open_one, now)
        sent = await store.sends_since(probe.to, now - timedelta(seconds=rules.window_seconds))
    except Exception as exc:  # any driver error
        log.warning("verification_store_failed", error=type(exc).__name__)
        return error_response(503, "the store is unavailable; retry later")
    if sent >= rules.max_sends_per_number:
        log.info("verification_limited", to=mask(probe.to), sent=sent)
        return error_response(
            429,
            "too many codes sent to this number; retry later",
            headers={"Retry-After": str(round(rules.window_seconds))},
        )
    vid = f"vf-{secrets.token_hex(16)}"
    expires = now + timedelta(seconds=body.ttl)
    message, new_code = _new_code(key, vid, 1, body, probe.to, expires)
    await store.create(
        vid,
        probe.to,
        probe.country,
        new_code,
        max_attempts=rules.max_attempts,
        now=now,
        expires_at=expires,
    )
    log.info("verification_started", id=vid, to=mask(probe.to))
    answer = await accept_request(ctx, message)
    if not isinstance(answer, Accepted):
        return answer
    return VerificationStarted(
        id=vid,
        status="pending",
        to=mask(probe.to),
        expires_at=expires,
        message_id=message.id,
        sends=1,
    )


async def _resend(
    ctx: ApiContext,
    store: VerificationStore,
    key: bytes,
    body: StartVerification,
    current: Verification,
    now: datetime,
) -> Any:
    cooldown = ctx.settings.verification.resend_cooldown
    wait = (current.last_sent_at + timedelta(seconds=cooldown) - now).total_seconds()
    if wait > 0:
        return error_response(
            429,
            "a code was sent to this number moments ago; retry later",
            headers={"Retry-After": str(max(1, round(wait)))},
        )
    sends = current.sends + 1
    if sends > ctx.settings.verification.max_sends_per_number:
        return error_response(429, "too many codes sent to this number; retry later")
    message, new_code = _new_code(key, current.id, sends, body, current.to, current.expires_at)
    if not await store.resend(
        current.id, new_code, now=now, sent_before=now - timedelta(seconds=cooldown)
    ):
        return error_response(409, "the verification changed meanwhile; retry")
    log.info("verification_resent", id=current.id, to=mask(current.to), sends=sends)
    answer = await accept_request(ctx, message)
    if not isinstance(answer, Accepted):
        return answer
    return VerificationStarted(
        id=current.id,
        status="pending",
        to=mask(current.to),
        expires_at=current.expires_at,
        message_id=message.id,
        sends=sends,
    )


def _new_code(
    key: bytes, vid: str, send: int, body: StartVerification, to: str, expires: datetime
) -> tuple[SendRequest, NewCode]:
    code = verify.generate_code(body.code_length)
    message = validate_request(
        {
            "id": f"{vid}.{send}",
            "to": to,
            "body": verify.render(code, body.template, body.locale),
            "kind": "otp",
            "expires_at": expires.isoformat(),
            "tags": {"verification": vid},
        }
    )
    salt = verify.new_salt()
    return message, NewCode(verify.hash_code(key, salt, code), salt, message.id)


@router.post(
    "/v1/verifications/{verification_id}/check",
    operation_id="checkVerification",
    response_model=CheckAnswer,
    responses=documented(401, 404, 409, 422, 503),
    summary="Check a verification code",
)
async def check_verification(
    verification_id: Annotated[str, Path(pattern=VERIFICATION_ID)],
    body: CheckCode,
    ctx: ApiContext = Depends(get_context),
) -> Any:
    """Each check of a pending code counts one attempt; `approved` also counts as feedback.

    `expired` and `too_many_attempts` count nothing. A verification is approved once: a
    later check answers 409, so a replayed check can never approve a login twice.
    """
    key = ctx.settings.verification_key()
    if key is None:
        return error_response(503, "verification.key is not configured")
    try:
        checked = await _store(ctx).check(verification_id, key, body.code, datetime.now(UTC))
    except Exception as exc:
        log.warning("verification_store_failed", error=type(exc).__name__)
        return error_response(503, "the store is unavailable; retry later")
    if checked is None:
        return error_response(404, f"no verification with id {verification_id!r}")
    if checked.already_approved:
        return error_response(409, "this verification was already approved")
    log.info("verification_checked", id=verification_id, result=checked.result.value)
    return CheckAnswer(
        id=verification_id, status=checked.result, attempts_left=checked.attempts_left
    )


@router.post(
    "/v1/messages/{message_id}/feedback",
    operation_id="messageFeedback",
    response_model=Feedback,
    responses=documented(401, 404, 422, 503),
    summary="Report that a message's code was used",
    tags=["feedback"],
)
async def message_feedback(
    message_id: Annotated[str, Path(pattern=ID_PATTERN)], ctx: ApiContext = Depends(get_context)
) -> Any:
    """Conversion feedback: the code this message carried was used (repeats change nothing)."""
    try:
        known = await _store(ctx).record_conversion(message_id, "api", datetime.now(UTC))
    except Exception as exc:
        log.warning("feedback_store_failed", error=type(exc).__name__)
        return error_response(503, "the store is unavailable; retry later")
    if not known:
        return error_response(404, f"no message with id {message_id!r}")
    return Feedback(id=message_id, converted=True)
