"""``POST /v1/verifications`` (send a code), ``…/{id}/check`` and ``/v1/messages/{id}/feedback``.

The rules are ``smsrelay.otp.service``; these routes translate its answers. The code is
sent through the same path as ``POST /v1/messages`` (recorded, then published on the
OTP lane). A code is never logged or returned.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Path
from fastapi.responses import JSONResponse
from pydantic import AwareDatetime, BaseModel

from smsrelay.api.auth import require_api_key
from smsrelay.api.context import ApiContext, get_context
from smsrelay.api.errors import documented, error_response
from smsrelay.api.messages import accept_request
from smsrelay.api.schemas import Accepted
from smsrelay.models import ID_PATTERN, SendRequest
from smsrelay.otp.service import (
    VERIFICATION_ID,
    CheckCode,
    RefusalKind,
    Refused,
    StartVerification,
    VerificationService,
)
from smsrelay.otp.verify import CheckResult
from smsrelay.store.verifications import VerificationStore

router = APIRouter(tags=["verifications"], dependencies=[Depends(require_api_key)])

STATUS = {
    RefusalKind.INVALID: 422,
    RefusalKind.NOT_FOUND: 404,
    RefusalKind.ALREADY_APPROVED: 409,
    RefusalKind.CONFLICT: 409,
    RefusalKind.LIMITED: 429,
    RefusalKind.NOT_CONFIGURED: 503,
    RefusalKind.UNAVAILABLE: 503,
}


class VerificationStarted(BaseModel):
    """A code was sent (``sends`` counts the first and each resend)."""

    id: str
    status: str
    to: str
    expires_at: AwareDatetime
    message_id: str
    sends: int


class CheckAnswer(BaseModel):
    """approved / denied / expired / too_many_attempts, and the guesses left."""

    id: str
    status: CheckResult
    attempts_left: int


class Feedback(BaseModel):
    """The message's code was used (conversion feedback)."""

    id: str
    converted: bool


class _NotSent(Exception):
    """``POST /v1/messages``'s own refusal of the code's message, answered as it is."""

    def __init__(self, response: Any) -> None:
        super().__init__("not sent")
        self.response = response


def _service(ctx: ApiContext) -> VerificationService:
    async def send(message: SendRequest) -> None:
        answer = await accept_request(ctx, message)
        if not isinstance(answer, Accepted):
            raise _NotSent(answer)

    converted = ctx.guard.converted if ctx.guard is not None else None
    return VerificationService(
        VerificationStore(ctx.store), ctx.settings, send, converted=converted
    )


def _refused(exc: Refused) -> JSONResponse:
    headers = {"Retry-After": str(exc.retry_after)} if exc.retry_after else None
    return error_response(STATUS[exc.kind], exc.reason, field=exc.field, headers=headers)


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
    try:
        started = await _service(ctx).start(body)
    except Refused as exc:
        return _refused(exc)
    except _NotSent as exc:
        return exc.response
    return VerificationStarted(
        id=started.id,
        status="pending",
        to=started.to,
        expires_at=started.expires_at,
        message_id=started.message_id,
        sends=started.sends,
    )


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
    try:
        checked = await _service(ctx).check(verification_id, body.code)
    except Refused as exc:
        return _refused(exc)
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
        await _service(ctx).feedback(message_id, "api")
    except Refused as exc:
        return _refused(exc)
    return Feedback(id=message_id, converted=True)
