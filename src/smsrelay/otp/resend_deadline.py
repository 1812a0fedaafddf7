"""Receipt-deadline resend: a sent OTP with no delivered receipt by ``resend_after`` goes again.

The worker parks a deadline (the request's own bytes: an OTP's body is never stored)
when it records an OTP ``sent`` whose request or route has ``resend_after``. When it
falls, ``DeadlineChecker.check`` decides from the store, in this order:

======================  =====================================================
found                   what happens
======================  =====================================================
deadline not reached    wait again for the rest (``Wait``)
no such message         nothing (``unknown``)
``delivered``           nothing (``delivered``): a receipt came in time
``expires_at`` passed   nothing (``expired``)
not handed over         nothing (``not-sent``): rejected, expired, in retry
``max_resends`` used    nothing (``max-resends``)
resend taken already    nothing (``taken``): another worker or copy did it
no other provider       nothing (``no-provider``): the plan has only the sender
else                    resend (``resent`` or ``failed``)
======================  =====================================================

A resend goes to the plan's next candidate after the provider that sent the message
last (wrapping round, never that one), then on along the plan while providers fail
transiently, like the dispatcher's failover. Resend ``n`` is taken in the store with
its first attempt, in one transaction, before any provider is called: of any number of
workers and copies of the deadline, one resends; a worker that dies mid-send leaves an
open attempt, and the redelivered deadline closes it as ``interrupted`` and sends again
(flagged ``possible_duplicate``, as the dispatcher does). The record of the send comes
before the event (``resend: n``) and before the deadline is acked. While resends remain,
the next deadline is ``resend_after`` after this one.

Receipts of every send count (``smsrelay.receipts``): a late ``delivered`` from the
first provider delivers the message whatever the resend's provider reports.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Protocol

from prometheus_client import CollectorRegistry, Counter

from smsrelay.errors import (
    InvalidRequest,
    OutcomeUnknown,
    ProviderError,
    RecipientRejected,
    TransientProviderError,
    UnconfirmedSend,
)
from smsrelay.health import SendOutcome, outcome_of
from smsrelay.limits.gate import LimitGate
from smsrelay.logging import get_logger
from smsrelay.models import (
    AttemptOutcome,
    EventError,
    Kind,
    SendRequest,
    SendResult,
    State,
    StatusEvent,
    parse_request,
)
from smsrelay.providers import Provider
from smsrelay.receipts import EventSink
from smsrelay.routing import Candidate, Plan, Router
from smsrelay.store.base import AttemptBill, MessageRecord, PendingEvent, attempt_bill
from smsrelay.store.resends import RESENDABLE

log = get_logger(__name__)


@dataclass(frozen=True)
class Deadline:
    """A deadline as the broker carries it: the request's bytes, which resend, when (Unix s)."""

    body: bytes
    resend: int
    due: float


@dataclass(frozen=True)
class Wait:
    """Not due yet: park the deadline again for ``remaining`` seconds."""

    remaining: float


@dataclass(frozen=True)
class Settled:
    """Checked: ``result`` says what was done; ``next`` is the following deadline, if any."""

    result: str
    next: Deadline | None = None


Checked = Wait | Settled


class ResendStore(Protocol):
    """What a check reads and writes (``smsrelay.store.resends.SqlResends``)."""

    async def get(self, message_id: str) -> MessageRecord | None:
        """The message with its attempts, or None."""

    async def claim(
        self, message_id: str, resend: int, provider: str, number: int, digest: str
    ) -> int | None:
        """Take resend ``resend`` and start attempt ``number``; its key, or None if taken."""

    async def start_attempt(self, message_id: str, number: int, provider: str) -> int:
        """Start another try of a resend already taken; its key."""

    async def interrupt_open_attempts(self, message_id: str) -> None:
        """Close attempts a dead worker left open; flag the message possible_duplicate."""

    async def finish_attempt(
        self,
        attempt_key: int,
        outcome: AttemptOutcome,
        *,
        error: EventError | None = None,
        bill: AttemptBill | None = None,
    ) -> None:
        """Record a try that did not send."""

    async def finish(
        self,
        message_id: str,
        attempt_key: int,
        provider: str,
        result: SendResult,
        bill: AttemptBill | None,
    ) -> tuple[State, bool]:
        """Record the resend as sent; the message's state after it, and whether receipts wait."""

    async def match_receipts(
        self, message_id: str, provider: str, provider_message_id: str
    ) -> list[PendingEvent]:
        """Apply receipts that overtook the resend's record."""

    async def events_published(self, keys: list[int]) -> None:
        """Drop published events from the outbox."""


class SendHealth(Protocol):
    """Breakers and delivery windows, as the dispatcher uses them (``HealthMonitor``)."""

    def allow(self, provider: str, country: str) -> bool:
        """May one send go to ``provider`` for ``country`` now (takes a half-open probe)?"""

    def record_send(self, provider: str, country: str, outcome: SendOutcome) -> None:
        """Count one attempt's outcome."""


class ResendMetrics:
    """Resends by provider and outcome; deadline checks by result."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.resends = Counter(
            "smsrelay_resends",
            "Receipt-deadline resends of OTPs, by the provider tried and its outcome",
            ["provider", "outcome"],
            registry=registry,
        )
        self.checks = Counter(
            "smsrelay_resend_checks",
            "Receipt deadlines checked, by result (resent, delivered, expired, max-resends…)",
            ["result"],
            registry=registry,
        )


@dataclass
class _Resend:
    request: SendRequest
    record: MessageRecord
    deadline: Deadline
    number: int
    possible_duplicate: bool


class DeadlineChecker:
    """Checks one receipt deadline against the store and resends when it is due."""

    def __init__(
        self,
        store: ResendStore,
        providers: Mapping[str, Provider],
        router: Router,
        events: EventSink,
        max_resends: int,
        metrics: ResendMetrics,
        digest_key: bytes | None = None,
        health: SendHealth | None = None,
        limits: LimitGate | None = None,
    ) -> None:
        # The dispatcher's breakers and limits (one of each per worker): a resend is a
        # send like any other for them.
        self.health = health
        self.limits = limits
        self.store = store
        self.providers = providers
        self.router = router
        self.events = events
        self.max_resends = max_resends
        self.metrics = metrics
        self.digest_key = digest_key

    async def check(
        self, deadline: Deadline, *, redelivered: bool = False, now: float | None = None
    ) -> Checked:
        """Decide and act on one deadline (see the module docstring)."""
        remaining = deadline.due - (time.time() if now is None else now)
        if remaining > 0:
            return Wait(remaining)
        try:
            request = parse_request(deadline.body)
        except InvalidRequest as exc:
            log.warning("resend_deadline_invalid", reason=exc.reason)
            return self._settled("invalid")
        record = await self.store.get(request.id)
        problem = self._why_not(request, record, deadline)
        if problem is not None or record is None:
            return self._settled(problem or "unknown")
        job = _Resend(request, record, deadline, _last_number(record), record.possible_duplicate)
        if record.resends >= deadline.resend:
            if not (redelivered and _open(record)):
                return self._settled("taken")
            # This deadline's worker died mid-send: the provider may have it already.
            await self.store.interrupt_open_attempts(request.id)
            job.possible_duplicate = True
            log.warning("possible_duplicate", id=request.id, resend=deadline.resend)
        return await self._resend(job, taken=record.resends >= deadline.resend)

    def _why_not(
        self, request: SendRequest, record: MessageRecord | None, deadline: Deadline
    ) -> str | None:
        if record is None:
            return "unknown"
        if record.state is State.DELIVERED:
            return "delivered"
        if request.is_expired():
            return "expired"
        if record.state not in RESENDABLE:
            return "not-sent"
        if deadline.resend > self.max_resends:
            return "max-resends"
        return None

    async def _resend(self, job: _Resend, *, taken: bool) -> Checked:
        plan = self.router.plan(job.request)
        for name in resend_order(plan.providers, job.record.provider):
            if job.request.is_expired():
                return self._settled("expired")
            if not await self._may_send(job.request, name, plan.candidate(name)):
                continue
            job.number += 1
            key = await self._start(job, name, taken)
            if key is None:
                return self._settled("taken")
            taken = True
            candidate = plan.candidate(name)
            try:
                result = await self._send(job, name, candidate)
            except ProviderError as exc:
                await self._failed(job, key, name, exc, attempt_bill(candidate))
                if isinstance(exc, RecipientRejected | UnconfirmedSend):
                    break  # the number itself is refused: no provider will do better
                continue
            return await self._record(job, key, name, result, attempt_bill(candidate, result))
        return self._settled("failed" if taken else "no-provider")

    async def _may_send(self, request: SendRequest, name: str, candidate: Candidate | None) -> bool:
        """The breaker, then the rate limit and spend caps, as for any send; never waits."""
        if self.health is not None and not self.health.allow(name, request.country):
            log.info("breaker_skipped", id=request.id, provider=name)
            return False
        if self.limits is None:
            return True
        refusal = await self.limits.admit(
            name,
            request.country,
            sender=request.sender or self.providers[name].settings.sender,
            otp=True,
            cost=candidate.estimated_cost if candidate else None,
            currency=candidate.currency if candidate else None,
            wait=0.0,
        )
        if refusal is not None:
            log.info("provider_skipped", id=request.id, provider=name, limit=refusal.kind)
        return refusal is None

    async def _start(self, job: _Resend, name: str, taken: bool) -> int | None:
        if taken:
            return await self.store.start_attempt(job.request.id, job.number, name)
        digest = job.request.digest(self.digest_key)
        return await self.store.claim(job.request.id, job.deadline.resend, name, job.number, digest)

    async def _send(self, job: _Resend, name: str, candidate: Candidate | None) -> SendResult:
        try:
            return await self.providers[name].send(candidate.request if candidate else job.request)
        except ProviderError:
            raise
        except Exception as exc:  # an adapter bug must not lose the record of the try
            log.exception("provider_crashed", provider=name, id=job.request.id)
            raise TransientProviderError(name, "internal", type(exc).__name__) from exc

    async def _failed(
        self, job: _Resend, key: int, name: str, exc: ProviderError, bill: AttemptBill | None
    ) -> None:
        outcome: AttemptOutcome = "transient" if exc.retryable else "failed"
        if isinstance(exc, OutcomeUnknown):
            outcome = "unknown"
        self._health(name, job.request.country, exc)
        self.metrics.resends.labels(name, outcome).inc()
        log.warning("resend_failed", id=job.request.id, provider=name, code=exc.code)
        error = EventError(code=f"{exc.provider}:{exc.code}", message=exc.message, retryable=False)
        await self.store.finish_attempt(key, outcome, error=error, bill=bill)

    async def _record(
        self, job: _Resend, key: int, name: str, result: SendResult, bill: AttemptBill | None
    ) -> Checked:
        state, waiting = await self.store.finish(job.request.id, key, name, result, bill)
        self._health(name, job.request.country, None)
        if self.limits is not None and bill is not None:
            await self.limits.sent(
                name,
                job.request.country,
                estimated=(bill.estimated_cost, bill.currency),
                actual=(bill.actual_cost, bill.actual_currency),
            )
        self.metrics.resends.labels(name, "sent").inc()
        log.info("message_resent", id=job.request.id, provider=name, resend=job.deadline.resend)
        if state is State.SENT:
            # A receipt that delivered the message meanwhile has had its event; this
            # send is on the attempts, the message stays delivered.
            await self.events.publish(self._event(job, name, result))
        if waiting:
            await self._apply_receipts(job.request.id, name, result.provider_message_id)
        return self._settled("resent", self._next(job))

    def _health(self, name: str, country: str, exc: ProviderError | None) -> None:
        outcome = outcome_of(exc) if self.health is not None else None
        if self.health is not None and outcome is not None:
            self.health.record_send(name, country, outcome)

    def _event(self, job: _Resend, name: str, result: SendResult) -> StatusEvent:
        return StatusEvent(
            id=job.request.id,
            state=State.SENT,
            provider=name,
            provider_message_id=result.provider_message_id,
            attempt=job.number,
            segments=result.segments,
            tags=dict(job.request.tags),
            at=datetime.now(UTC),
            possible_duplicate=job.possible_duplicate,
            resend=job.deadline.resend,
        )

    def _next(self, job: _Resend) -> Deadline | None:
        """The following resend's deadline while resends remain."""
        after = resend_after(job.request, self.router.plan(job.request))
        if after is None or job.deadline.resend >= self.max_resends:
            return None
        return Deadline(job.deadline.body, job.deadline.resend + 1, time.time() + after)

    async def _apply_receipts(self, message_id: str, provider: str, pmid: str) -> None:
        # Best effort, as the dispatcher's: kept receipts wait for the next one or a lookup.
        try:
            pending = await self.store.match_receipts(message_id, provider, pmid)
            for item in pending:
                await self.events.publish(item.event)
            if pending:
                await self.store.events_published([item.key for item in pending])
        except Exception as exc:
            log.warning("pending_receipts_deferred", id=message_id, error=type(exc).__name__)

    def _settled(self, result: str, following: Deadline | None = None) -> Settled:
        self.metrics.checks.labels(result).inc()
        return Settled(result, following)


def resend_after(request: SendRequest, plan: Plan | None) -> int | None:
    """Seconds before a sent OTP with no delivered receipt is resent (request, else route)."""
    if request.kind is not Kind.OTP:
        return None
    if request.resend_after is not None:
        return request.resend_after
    return plan.match.route.resend_after if plan is not None else None


def resend_order(order: Sequence[str], sender: str | None) -> list[str]:
    """The plan's providers from the one after ``sender`` round to before it, without it."""
    if sender not in order:
        return [name for name in order if name != sender]
    at = order.index(sender)
    return [*order[at + 1 :], *order[:at]]


def _open(record: MessageRecord) -> bool:
    return any(a.outcome == "started" for a in record.attempts)


def _last_number(record: MessageRecord) -> int:
    return max((a.number for a in record.attempts), default=0)
