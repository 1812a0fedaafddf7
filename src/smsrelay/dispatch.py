"""One request's journey: validate → dedupe → expiry → plan → send → record → event.

The dispatcher knows nothing of AMQP or HTTP: it takes the raw body and what the
transport knows (redelivered? how many delayed retries so far?) and returns an
``Outcome`` that tells the transport what to do with the message. The transport acks
only after ``handle`` returned, i.e. after the outcome is recorded; a transport that
publishes (retries, dead letters) carries the outcome out inside ``process`` so that
another delivery of the same id waits until it is done.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol

from smsrelay import publish_time, telemetry
from smsrelay.errors import (
    BreakerOpen,
    InvalidRequest,
    OutcomeUnknown,
    ProviderError,
    RateLimited,
    RecipientRejected,
    StoreRejected,
    TransientProviderError,
    UnconfirmedSend,
)
from smsrelay.guard import Guard
from smsrelay.health import SendOutcome, outcome_of
from smsrelay.limits.gate import LimitGate, Refusal
from smsrelay.logging import get_logger
from smsrelay.metrics import Metrics
from smsrelay.models import (
    AttemptOutcome,
    EventError,
    Kind,
    SendRequest,
    SendResult,
    State,
    StatusEvent,
    parse_request,
    salvage_id,
)
from smsrelay.otp.geo import GeoRules
from smsrelay.otp.resend_deadline import resend_after
from smsrelay.providers import Provider
from smsrelay.routing import Plan, Router
from smsrelay.settings import RetrySettings
from smsrelay.store import AttemptBill, Claim, MessageRecord, Store
from smsrelay.store.base import attempt_bill
from smsrelay.store.receipts import apply_pending_receipts

log = get_logger(__name__)


class EventSink(Protocol):
    """Where status events go (the AMQP ``sms.events`` exchange in production)."""

    async def publish(self, event: StatusEvent) -> None:
        """Publish one event; raise if it could not be published."""


class SendHealth(Protocol):
    """Circuit breakers and delivery windows as the dispatcher uses them (``HealthMonitor``)."""

    def allow(self, provider: str, country: str) -> bool:
        """May one send go to ``provider`` for ``country`` now (takes a half-open probe)?"""

    def record_send(self, provider: str, country: str, outcome: SendOutcome) -> None:
        """Count one attempt's outcome."""


@dataclass(frozen=True)
class Done:
    """Ack: the outcome is recorded (sent, failed, expired or a duplicate).

    ``resend_after``: a sent OTP to check for a delivered receipt after so many seconds
    (the transport schedules the deadline before it acks; smsrelay.otp.resend_deadline).
    """

    state: State | None
    resend_after: int | None = None


@dataclass(frozen=True)
class DeadLetter:
    """The request is invalid: dead-letter its original body with ``reason``."""

    reason: str


@dataclass(frozen=True)
class Retry:
    """Every provider failed transiently: republish after ``delay`` seconds."""

    delay: float
    attempt: int


Outcome = Done | DeadLetter | Retry


@dataclass
class _Round:
    request: SendRequest
    claim: Claim
    retry_round: int
    possible_duplicate: bool
    log: Any
    plan: Plan | None = None
    # What the attempt under way sends and costs (recorded when it is closed).
    bill: AttemptBill | None = None
    # Rate limits and spend caps: the provider admitted before the claim, and refusals.
    admitted: str | None = None
    refused: dict[str, Refusal] = field(default_factory=dict)


class Dispatcher:
    """Turns one raw request into sends, records and events."""

    def __init__(
        self,
        store: Store,
        providers: Mapping[str, Provider],
        router: Router,
        events: EventSink,
        retry: RetrySettings,
        metrics: Metrics | None = None,
        digest_key: bytes | None = None,
        geo: GeoRules | None = None,
        health: SendHealth | None = None,
        limits: LimitGate | None = None,
        guard: Guard | None = None,
    ) -> None:
        self.store = store
        self.health = health
        # Rate limits and spend caps, asked before and told after each attempt.
        self.limits = limits
        self.geo = geo if geo is not None and geo.active else None
        self.guard = guard
        # Keys SendRequest.digest: the API must use the same (settings.digest_key).
        self.digest_key = digest_key
        self.providers = providers
        self.router = router
        self.events = events
        self.retry = retry
        self.metrics = metrics or Metrics()
        # id → (resolves True once that id's outcome is recorded and carried out,
        # the digest of the request being sent under it).
        self._in_flight: dict[str, tuple[asyncio.Future[bool], str]] = {}
        self._random = random.Random()

    async def handle(
        self, raw: bytes, *, redelivered: bool = False, retry_round: int = 0
    ) -> Outcome:
        """Process one delivery of ``raw``; see the module docstring."""
        async with self.process(raw, redelivered=redelivered, retry_round=retry_round) as outcome:
            return outcome

    @asynccontextmanager
    async def process(
        self, raw: bytes, *, redelivered: bool = False, retry_round: int = 0
    ) -> AsyncIterator[Outcome]:
        """``handle`` as a scope: the id stays in flight until the block has carried out
        the outcome (published the retry or dead letter); a block that raises did not.

        Another delivery of an id in flight (a redelivery after the broker connection
        dropped, whose original's own delivery died with the old channel, or a duplicate
        publish) waits for the original: once the original's outcome is recorded and
        carried out it is done; if the original failed, it takes over.
        """
        try:
            request = parse_request(raw)
        except InvalidRequest as exc:
            yield await self._reject(raw, exc.reason)
            return
        digest = request.digest(self.digest_key)
        while (held := self._in_flight.get(request.id)) is not None:
            original, original_digest = held
            log.info("waiting_for_in_flight_copy", id=request.id, redelivered=redelivered)
            if await asyncio.shield(original):
                if original_digest != digest:
                    # The same id for another request: refused, as the claim would.
                    yield await self._conflict(request, log.bind(id=request.id))
                    return
                self.metrics.duplicates.inc()
                yield Done(None)
                return
        settled: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
        self._in_flight[request.id] = (settled, digest)
        try:
            yield await self._refusable(request, digest, redelivered, retry_round)
            settled.set_result(True)
        finally:
            del self._in_flight[request.id]
            if not settled.done():
                settled.set_result(False)

    async def _refusable(
        self, request: SendRequest, digest: str, redelivered: bool, retry_round: int
    ) -> Outcome:
        try:
            with telemetry.dispatching(request.id):
                return await self._handle(request, digest, redelivered, retry_round)
        except StoreRejected as exc:
            # The database will never take what this message writes: a redelivery
            # would fail the same way, fifty times over. Dead-letter it now.
            log.warning("store_rejected", id=request.id, reason=str(exc))
            return await self._refuse(request.id, str(exc), code="store-rejected")

    async def _handle(
        self, request: SendRequest, digest: str, redelivered: bool, retry_round: int
    ) -> Outcome:
        bound = log.bind(id=request.id, country=request.country)
        plan = self.router.plan(request)
        route = plan.providers
        telemetry.note({"smsrelay.route": route, "smsrelay.country": request.country})
        blocked = self.geo.refusal(request) if self.geo is not None else None
        if blocked is None and self.guard is not None and retry_round == 0 and not redelivered:
            # Screened once per message (its first delivery); the guard counts it by id.
            tried = plan.tried[0] if plan.tried else None
            cost = (tried.estimated_cost, tried.currency) if tried else (None, None)
            blocked = await self.guard.refusal(request, *cost)
        # A new message's first attempt is recorded with its claim: one commit fewer.
        first = route[0] if route and not request.is_expired() and blocked is None else None
        # Asked once: a half-open breaker's probe slot is not taken twice.
        asked = (first, self._breaker_allows(first, request.country, bound)) if first else None
        refused = None
        if asked is not None and not asked[1]:
            first = None
        elif first is not None:
            refused = await self._admit(request, plan, first)
            if refused is not None:
                first = None  # the claim starts no attempt at a provider that cannot take it now
        claim = await self.store.claim(request, first, digest)
        if claim.conflict:
            return await self._conflict(request, bound)
        if not claim.new and not _resumable(claim, redelivered, retry_round):
            return await self._duplicate(
                request.id, redelivered, bound, resend_after(request, plan)
            )
        if claim.open_attempt:
            await self.store.interrupt_open_attempts(request.id)
            self.metrics.possible_duplicates.inc()
            bound.warning("possible_duplicate", attempts=claim.attempts)
        job = _Round(
            request, claim, retry_round, claim.open_attempt or claim.possible_duplicate, bound, plan
        )
        if route and blocked is None:
            if refused is not None:
                job.admitted, job.refused = None, {route[0]: refused}
            elif asked is not None and asked[1]:
                job.admitted, job.refused = route[0], {}
        if request.is_expired():
            return await self._finish(
                job, State.EXPIRED, error=_expired_error(), closing_attempt=claim.first_attempt
            )
        if blocked is not None:
            # A policy refusal, not a bad request: recorded and acked, never sent.
            bound.info("policy_refused", rule=blocked.code)
            return await self._finish(job, State.REJECTED, error=blocked)
        return await self._send(job, route, asked)

    async def _send(
        self, job: _Round, route: list[str], asked: tuple[str, bool] | None = None
    ) -> Outcome:
        """Walk the plan's providers (``route``) until one takes the message.

        A provider whose breaker refuses is skipped (``asked``: a breaker's answer so far).
        """
        started = job.claim.first_attempt  # attempt 1 at route[0], begun with the claim
        attempt = job.claim.attempts - (1 if started is not None else 0)
        last: ProviderError | None = None
        for name in route:
            allowed = asked[1] if asked and asked[0] == name else None
            if allowed is None:
                allowed = self._breaker_allows(name, job.request.country, job.log)
            if not allowed:
                last = last or BreakerOpen(name)
                continue
            if job.request.is_expired():
                return await self._finish(
                    job,
                    State.EXPIRED,
                    attempt=attempt,
                    error=_expired_error(),
                    closing_attempt=started,
                )
            refusal = await self._refused(job, name)
            if refusal is not None and refusal.kind == "rate" and not _moves_on(job.plan):
                # on_rate_limit: wait. This provider, after a wait, or later: not another.
                error = _limits_error({name: refusal}, retryable=True)
                return await self._later(job, attempt, self.retry.tiers[0], error)
            if refusal is not None:
                continue
            attempt += 1
            try:
                key, result = await self._attempt(job, name, attempt, started)
            except (RecipientRejected, UnconfirmedSend) as exc:
                return await self._finish(
                    job, State.FAILED, provider=name, attempt=attempt, error=_error(exc)
                )
            except OutcomeUnknown as exc:
                if not self.providers[name].settings.retry_unknown_outcome:
                    # It may have been sent: no other try, unless the provider allows it.
                    error = _error(exc, retryable=False)
                    return await self._finish(
                        job, State.FAILED, provider=name, attempt=attempt, error=error
                    )
                self._flag_possible_duplicate(job, name)
                last = exc
                continue
            except RateLimited as exc:
                if self.limits is None or not self.limits.limited(name):
                    last = exc
                    continue
                # Back-pressure, not a failure: every worker slows down, this one comes back.
                pause = await self.limits.throttled(name, exc.retry_after)
                return await self._later(job, attempt, pause, _error(exc))
            except ProviderError as exc:
                last = exc
                continue
            finally:
                started = None
            return await self._finish(
                job, State.SENT, provider=name, attempt=attempt, result=result, closing_attempt=key
            )
        return await self._after_all_failed(job, attempt, last)

    async def _admit(self, request: SendRequest, plan: Plan | None, name: str) -> Refusal | None:
        """Ask the rate limit and spend caps whether ``name`` may send ``request`` now."""
        if self.limits is None:
            return None
        candidate = plan.candidate(name) if plan is not None else None
        nowait = _moves_on(plan)
        refusal = await self.limits.admit(
            name,
            request.country,
            sender=request.sender or self.providers[name].settings.sender,
            otp=request.kind is Kind.OTP,
            cost=candidate.estimated_cost if candidate else None,
            currency=candidate.currency if candidate else None,
            wait=0.0 if nowait else self.limits.max_wait,
        )
        if refusal is not None:
            log.info("provider_skipped", id=request.id, provider=name, limit=refusal.kind)
        return refusal

    async def _refused(self, job: _Round, name: str) -> Refusal | None:
        """Why the limits keep ``name`` from sending ``job`` now (asked once per round)."""
        if self.limits is None or job.admitted == name:
            job.admitted = None
            return None
        if name not in job.refused:
            refusal = await self._admit(job.request, job.plan, name)
            if refusal is None:
                return None
            job.refused[name] = refusal
        return job.refused[name]

    async def _attempt(
        self, job: _Round, name: str, attempt: int, key: int | None
    ) -> tuple[int, SendResult]:
        provider = self.providers[name]
        candidate = job.plan.candidate(name) if job.plan is not None else None
        job.bill = attempt_bill(candidate)
        if key is None:
            key = await self.store.start_attempt(job.request.id, attempt, name)
        if (waited := publish_time.waited()) is not None:
            self.metrics.publish_to_request.labels(name, job.request.country).observe(waited)
        started = time.perf_counter()
        try:
            result = await provider.send(candidate.request if candidate else job.request)
        except ProviderError as exc:
            await self._attempt_failed(job, key, name, exc)
            raise
        except Exception as exc:  # an adapter bug must not lose the message: retry it
            job.log.exception("provider_crashed", provider=name)
            wrapped = TransientProviderError(name, "internal", type(exc).__name__)
            await self._attempt_failed(job, key, name, wrapped)
            raise wrapped from exc
        elapsed = time.perf_counter() - started
        self._record_send(name, job.request.country, None)
        self.metrics.send_latency.labels(name, job.request.country).observe(elapsed)
        self.metrics.sends.labels(name, job.request.country, "sent").inc()
        job.bill = attempt_bill(candidate, result)
        self._count_cost(name, job.request.country, job.bill)
        if self.limits is not None and job.bill is not None:
            bill = job.bill
            await self.limits.sent(
                name,
                job.request.country,
                estimated=(bill.estimated_cost, bill.currency),
                actual=(bill.actual_cost, bill.actual_currency),
            )
        return key, result

    def _count_cost(self, name: str, country: str, bill: AttemptBill | None) -> None:
        if bill is None:
            return
        self.metrics.parts.labels(name, country).inc(bill.encoded.sent.count)
        if bill.estimated_cost is not None and bill.currency:
            cost = float(bill.estimated_cost)
            self.metrics.estimated_cost.labels(name, country, bill.currency).inc(cost)
        if bill.actual_cost is not None and bill.actual_currency:
            cost = float(bill.actual_cost)
            self.metrics.actual_cost.labels(name, country, bill.actual_currency).inc(cost)

    def _flag_possible_duplicate(self, job: _Round, name: str) -> None:
        """Whatever sends ``job`` from now on may duplicate what ``name`` already sent."""
        job.possible_duplicate = True
        self.metrics.possible_duplicates.inc()
        job.log.warning("possible_duplicate", provider=name, cause="outcome_unknown")

    def _breaker_allows(self, name: str, country: str, bound: Any) -> bool:
        if self.health is None or self.health.allow(name, country):
            return True
        bound.info("breaker_skipped", provider=name)
        return False

    def _record_send(self, name: str, country: str, exc: ProviderError | None) -> None:
        outcome = outcome_of(exc) if self.health is not None else None
        if self.health is not None and outcome is not None:
            self.health.record_send(name, country, outcome)

    async def _attempt_failed(self, job: _Round, key: int, name: str, exc: ProviderError) -> None:
        self._record_send(name, job.request.country, exc)
        outcome = _attempt_outcome(exc)
        self.metrics.sends.labels(name, job.request.country, outcome).inc()
        job.log.warning(
            "send_failed", provider=name, code=exc.code, error=exc.message, retryable=exc.retryable
        )
        await self.store.finish_attempt(key, outcome, error=_error(exc), bill=job.bill)

    async def _after_all_failed(
        self, job: _Round, attempt: int, last: ProviderError | None
    ) -> Outcome:
        if last is None and any(r.kind == "rate" for r in job.refused.values()):
            # Every provider that could take it is at its rate limit: later, not failed.
            error = _limits_error(job.refused, retryable=True)
            return await self._later(job, attempt, self.retry.tiers[0], error)
        if last is None and job.refused:
            error = _limits_error(job.refused, retryable=False)
        elif last is None:
            error = _no_provider(job.plan)
        else:
            error = _error(last)
        if last is None or not last.retryable:
            return await self._finish(job, State.FAILED, attempt=attempt, error=error)
        next_round = job.retry_round + 1
        if next_round >= self.retry.max_attempts:
            return await self._finish(job, State.FAILED, attempt=attempt, error=error)
        delay = self._delay(next_round, last)
        expires_at = job.request.expires_at
        if expires_at and datetime.now(UTC) + timedelta(seconds=delay) >= expires_at:
            return await self._finish(job, State.EXPIRED, attempt=attempt, error=error)
        if job.possible_duplicate:
            # Keep the flag for the round that finally sends it.
            await self.store.finish_message(
                job.request.id, State.ACCEPTED, error=error, possible_duplicate=True
            )
        self.metrics.retries.inc()
        job.log.info("retry_scheduled", delay=round(delay, 3), round=next_round)
        await self._emit(job, State.ACCEPTED, attempt=attempt, error=error)
        return Retry(delay=delay, attempt=next_round)

    async def _later(self, job: _Round, attempt: int, delay: float, error: EventError) -> Outcome:
        """Rate limits: send it again after ``delay`` (a retry tier), without using up a
        retry round (after round 0 it comes back as round 1, as any first retry)."""
        delay = self.retry.round_up(delay)
        expires_at = job.request.expires_at
        if expires_at and datetime.now(UTC) + timedelta(seconds=delay) >= expires_at:
            return await self._finish(job, State.EXPIRED, attempt=attempt, error=error)
        if job.possible_duplicate:
            await self.store.finish_message(
                job.request.id, State.ACCEPTED, error=error, possible_duplicate=True
            )
        # Round 1 at least: a copy of round 0 would be taken for a duplicate publish.
        next_round = max(job.retry_round, 1)
        job.log.info("rate_limited_later", delay=delay, round=next_round)
        await self._emit(job, State.ACCEPTED, attempt=attempt, error=error)
        return Retry(delay=delay, attempt=next_round)

    def _delay(self, round_no: int, last: ProviderError) -> float:
        """Backoff for retry round ``round_no`` (1-based) with jitter, at least retry_after.

        A ``Retry-After`` is rounded up to the next retry tier and capped at the longest:
        one provider asking for an hour must not park a message beyond the tiers.
        """
        delays = self.retry.delays
        base = delays[min(round_no, len(delays)) - 1]
        jittered = base * (1 + self._random.uniform(-self.retry.jitter, self.retry.jitter))
        if isinstance(last, RateLimited) and last.retry_after:
            return max(jittered, self.retry.round_up(last.retry_after))
        return jittered

    async def _finish(
        self,
        job: _Round,
        state: State,
        *,
        provider: str | None = None,
        attempt: int | None = None,
        result: SendResult | None = None,
        error: EventError | None = None,
        closing_attempt: int | None = None,
    ) -> Outcome:
        pmid = result.provider_message_id if result else None
        parts = result.segments if result else None
        waiting = await self.store.finish_message(
            job.request.id,
            state,
            provider=provider,
            provider_message_id=pmid,
            segments=parts,
            error=error,
            possible_duplicate=job.possible_duplicate,
            closing_attempt=closing_attempt,
            bill=job.bill,
            trace_context=telemetry.traceparent(),
        )
        telemetry.note({"smsrelay.state": state.value, "smsrelay.provider": provider})
        self.metrics.messages.labels(state.value).inc()
        if state is State.FAILED:
            # It will not be sent without a person: say so at a level alerts look at.
            code = error.code if error else None
            job.log.warning("message_failed", provider=provider, attempt=attempt, error=code)
        else:
            job.log.info("message_" + state.value, provider=provider, attempt=attempt)
        await self._emit(job, state, provider=provider, attempt=attempt, result=result, error=error)
        if waiting and provider and pmid:
            # Receipts can arrive before the send is recorded; they wait for this moment.
            await apply_pending_receipts(
                self.store, self.events, job.request.id, provider, pmid, self.metrics
            )
        return Done(state, resend_after(job.request, job.plan) if state is State.SENT else None)

    async def _emit(
        self,
        job: _Round,
        state: State,
        *,
        provider: str | None = None,
        attempt: int | None = None,
        result: SendResult | None = None,
        error: EventError | None = None,
    ) -> None:
        await self.events.publish(
            StatusEvent(
                id=job.request.id,
                state=state,
                provider=provider,
                provider_message_id=result.provider_message_id if result else None,
                attempt=attempt if attempt is not None else job.claim.attempts,
                error=error,
                segments=result.segments if result else None,
                tags=dict(job.request.tags),
                at=datetime.now(UTC),
                possible_duplicate=job.possible_duplicate,
            )
        )

    async def _reject(self, raw: bytes, reason: str) -> Outcome:
        message_id = salvage_id(raw)
        log.warning("request_rejected", id=message_id, reason=reason)
        return await self._refuse(message_id, reason)

    async def _refuse(
        self, message_id: str | None, reason: str, code: str = "invalid-request"
    ) -> Outcome:
        """Record and announce a dead-lettered request (``rejected`` when the id is known)."""
        await self.store.record_rejection(message_id, reason)
        self.metrics.messages.labels(State.REJECTED.value).inc()
        if message_id is not None:
            await self.events.publish(
                StatusEvent(
                    id=message_id,
                    state=State.REJECTED,
                    at=datetime.now(UTC),
                    error=EventError(code=code, message=reason, retryable=False),
                )
            )
        return DeadLetter(reason)

    async def _conflict(self, request: SendRequest, bound: Any) -> Outcome:
        """The id was taken for another request: refuse this one rather than drop it unseen."""
        reason = id_conflict_reason(request.id)
        self.metrics.id_conflicts.inc()
        bound.warning("id_conflict")
        await self.store.record_rejection(request.id, reason)
        self.metrics.messages.labels(State.REJECTED.value).inc()
        await self.events.publish(
            StatusEvent(
                id=request.id,
                state=State.REJECTED,
                at=datetime.now(UTC),
                error=EventError(code="id-conflict", message=reason, retryable=False),
                tags=dict(request.tags),
            )
        )
        return DeadLetter(reason)

    async def _duplicate(
        self, message_id: str, redelivered: bool, bound: Any, resend: int | None = None
    ) -> Outcome:
        self.metrics.duplicates.inc()
        bound.info("duplicate_request", redelivered=redelivered)
        if not redelivered:
            return Done(None)
        record = await self.store.get(message_id)
        if record is not None and record.state.final:
            # We crashed or lost the broker between recording and acking: the event
            # may never have gone out, so publish it again (events are at-least-once).
            await self.events.publish(_event_from_record(record))
        # ... and its receipt deadline may never have been parked: park it (again; the
        # deadline's check resends once however many there are).
        sent = record is not None and record.state is State.SENT
        return Done(None, resend if sent else None)


def id_conflict_reason(message_id: str) -> str:
    """Why a request whose id was taken for another request is refused (AMQP and HTTP)."""
    return (
        f'id "{message_id}" was already used for a different request (another to, body, '
        "from, kind, expires_at or tags); use a new id for a new message"
    )


def _resumable(claim: Claim, redelivered: bool, retry_round: int) -> bool:
    """May a request whose id was seen before be worked on again?"""
    if claim.state.final:
        return False
    # A scheduled retry, or a redelivery after a worker died before recording an outcome.
    return retry_round > 0 or redelivered


def _moves_on(plan: Plan | None) -> bool:
    """Does the route pass over a provider at its rate limit (``on_rate_limit: next``)?"""
    return plan is not None and plan.match.route.on_rate_limit == "next"


def _no_provider(plan: Plan | None) -> EventError:
    """No provider to try; ``spend-cap-reached`` when the caps left every one out."""
    left_out = [c for c in plan.candidates if c.excluded is not None] if plan else []
    capped = bool(left_out) and all(c.limits.cap_reached for c in left_out)
    code = "spend-cap-reached" if capped else "no-provider"
    return EventError(code=code, message=_nothing_to_try(plan), retryable=False)


def _limits_error(refused: Mapping[str, Refusal], *, retryable: bool) -> EventError:
    """Every provider left was refused by its rate limit or a spend cap."""
    rate = any(r.kind == "rate" for r in refused.values())
    code = "rate-limited" if rate else "spend-cap-reached"
    detail = "; ".join(f"{name}: {r.detail}" for name, r in refused.items())
    return EventError(
        code=code, message=f"no provider can take it now ({detail})", retryable=retryable
    )


def _nothing_to_try(plan: Plan | None) -> str:
    """Why a plan has no provider to try: each left-out candidate and its reason."""
    left_out = [f"{c.provider}: {c.excluded}" for c in plan.candidates] if plan else []
    return "no provider to try (" + "; ".join(left_out) + ")" if left_out else "route is empty"


def _attempt_outcome(exc: ProviderError) -> AttemptOutcome:
    if isinstance(exc, OutcomeUnknown):
        return "unknown"
    return "transient" if exc.retryable else "failed"


def _error(exc: ProviderError, retryable: bool | None = None) -> EventError:
    return EventError(
        code=f"{exc.provider}:{exc.code}",
        message=exc.message,
        retryable=exc.retryable if retryable is None else retryable,
    )


def _expired_error() -> EventError:
    return EventError(
        code="expired", message="expires_at passed before a provider took it", retryable=False
    )


def _event_from_record(record: MessageRecord) -> StatusEvent:
    error = (
        EventError(code=record.error_code, message=record.error_message or "", retryable=False)
        if record.error_code
        else None
    )
    return StatusEvent(
        id=record.id,
        state=record.state,
        provider=record.provider,
        provider_message_id=record.provider_message_id,
        attempt=len(record.attempts),
        error=error,
        segments=record.segments,
        tags=record.tags,
        at=datetime.now(UTC),
        possible_duplicate=record.possible_duplicate,
    )
