"""The dispatcher: one raw request → sends, a record and events, and what the transport does next.

Real collaborators throughout: a migrated SQLite store, simulator providers configured
to fail, the real router, and an event sink that keeps what it was given.
"""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime, timedelta
from typing import Any, ClassVar

import pytest

from smsrelay.dispatch import DeadLetter, Dispatcher, Done, Retry
from smsrelay.errors import (
    AuthenticationFailed,
    OutcomeUnknown,
    ProviderError,
    RateLimited,
    TransientProviderError,
    UnconfirmedSend,
)
from smsrelay.models import SendRequest, SendResult, State, StatusEvent, parse_request
from smsrelay.providers import Provider, ProviderSettings
from smsrelay.providers.simulator import SimulatorProvider, SimulatorSettings
from smsrelay.routing import Router
from smsrelay.settings import RetrySettings
from smsrelay.store import MessageRecord, SqlStore

TO = "+14155550123"
RETRY = RetrySettings(max_attempts=3, delays=[1.0], jitter=0.0)


class EventList:
    """An EventSink that keeps every event it is given, in order."""

    def __init__(self) -> None:
        self.events: list[StatusEvent] = []

    async def publish(self, event: StatusEvent) -> None:
        self.events.append(event)

    @property
    def states(self) -> list[State]:
        return [event.state for event in self.events]


class CrashingProvider(Provider):
    """A provider whose adapter has a bug: every send raises a plain RuntimeError."""

    type_name: ClassVar[str] = "crashing"
    settings_class: ClassVar[type[ProviderSettings]] = ProviderSettings

    async def send(self, request: SendRequest) -> SendResult:
        raise RuntimeError("adapter bug")


class RateLimitedProvider(Provider):
    """A provider that always answers 'slow down, come back in ``retry_after`` seconds'."""

    type_name: ClassVar[str] = "limited"
    settings_class: ClassVar[type[ProviderSettings]] = ProviderSettings

    def __init__(self, name: str, retry_after: float) -> None:
        super().__init__(name, ProviderSettings(type=self.type_name))
        self.retry_after = retry_after

    async def send(self, request: SendRequest) -> SendResult:
        raise RateLimited(self.name, "429", "too many requests", retry_after=self.retry_after)


class FlakyProvider(Provider):
    """Fails transiently ``failures`` times, then sends."""

    type_name: ClassVar[str] = "flaky"
    settings_class: ClassVar[type[ProviderSettings]] = ProviderSettings

    def __init__(self, name: str, failures: int) -> None:
        super().__init__(name, ProviderSettings(type=self.type_name))
        self.failures = failures

    async def send(self, request: SendRequest) -> SendResult:
        if self.failures > 0:
            self.failures -= 1
            raise TransientProviderError(self.name, "503", "unavailable")
        return SendResult(provider_message_id=f"{self.name}-1", segments=1)


class RaisingProvider(Provider):
    """Always raises the error it was built with."""

    type_name: ClassVar[str] = "raising"
    settings_class: ClassVar[type[ProviderSettings]] = ProviderSettings

    def __init__(self, name: str, error: ProviderError, **settings: Any) -> None:
        super().__init__(name, ProviderSettings(type=self.type_name, **settings))
        self.error = error

    async def send(self, request: SendRequest) -> SendResult:
        raise self.error


def simulator(name: str, **settings: Any) -> SimulatorProvider:
    """A simulator provider called ``name``."""
    return SimulatorProvider(name, SimulatorSettings(**settings))


def raw(message_id: str = "msg-1", **changes: Any) -> bytes:
    """A valid request on the wire."""
    data = {"id": message_id, "to": TO, "body": "Your parcel is on its way", **changes}
    return json.dumps(data).encode()


@pytest.fixture
def sink() -> EventList:
    """The events the dispatcher published."""
    return EventList()


def dispatcher(
    store: SqlStore,
    sink: EventList,
    *providers: Provider,
    retry: RetrySettings = RETRY,
    routes: dict[str, list[str]] | None = None,
) -> Dispatcher:
    """A dispatcher routing every number to ``providers`` in order."""
    table = routes if routes is not None else {"*": [p.name for p in providers]}
    return Dispatcher(store, {p.name: p for p in providers}, Router(table), sink, retry)


async def record(store: SqlStore, message_id: str = "msg-1") -> MessageRecord:
    """The stored record of ``message_id``, which must exist."""
    found = await store.get(message_id)
    assert found is not None
    return found


async def test_request_is_sent_once_and_reported_as_sent(store: SqlStore, sink: EventList) -> None:
    """A valid request is sent by the first provider, recorded and announced as sent."""
    alpha = simulator("alpha")
    outcome = await dispatcher(store, sink, alpha).handle(raw(tags={"campaign": "spring"}))

    assert outcome == Done(State.SENT)
    assert [r.id for r in alpha.sent] == ["msg-1"]
    [event] = sink.events
    assert event.state is State.SENT
    assert event.provider == "alpha"
    assert event.provider_message_id is not None
    assert event.provider_message_id.startswith("sim-")
    assert event.segments == 1
    assert event.tags == {"campaign": "spring"}
    assert event.attempt == 1
    assert not event.possible_duplicate
    stored = await record(store)
    assert (stored.state, stored.provider, stored.provider_message_id, stored.segments) == (
        State.SENT,
        "alpha",
        event.provider_message_id,
        1,
    )
    assert [(a.number, a.provider, a.outcome) for a in stored.attempts] == [(1, "alpha", "sent")]


async def test_second_delivery_of_the_same_id_is_not_sent_again(
    store: SqlStore, sink: EventList
) -> None:
    """A duplicate publish of a sent id is acked as Done(None): no send, no event."""
    alpha = simulator("alpha")
    relay = dispatcher(store, sink, alpha)
    await relay.handle(raw())

    assert await relay.handle(raw()) == Done(None)
    assert len(alpha.sent) == 1
    assert sink.states == [State.SENT]


async def test_concurrent_duplicates_are_sent_once(store: SqlStore, sink: EventList) -> None:
    """Two deliveries of one id handled at the same time lead to a single send."""
    alpha = simulator("alpha", latency_ms=50)
    relay = dispatcher(store, sink, alpha)
    outcomes = await asyncio.gather(relay.handle(raw()), relay.handle(raw()))
    assert set(outcomes) == {Done(None), Done(State.SENT)}
    assert len(alpha.sent) == 1


async def test_redelivery_after_a_crash_mid_send_is_sent_and_flagged(
    store: SqlStore, sink: EventList
) -> None:
    """An attempt a dead worker left open is interrupted; the resend is a possible duplicate."""
    # What a worker that died inside provider.send leaves behind.
    await store.claim(parse_request(raw()))
    await store.start_attempt("msg-1", 1, "alpha")
    alpha = simulator("alpha")

    outcome = await dispatcher(store, sink, alpha).handle(raw(), redelivered=True)

    assert outcome == Done(State.SENT)
    assert len(alpha.sent) == 1
    [event] = sink.events
    assert event.possible_duplicate
    assert event.attempt == 2
    stored = await record(store)
    assert stored.possible_duplicate
    assert [(a.number, a.outcome) for a in stored.attempts] == [(1, "interrupted"), (2, "sent")]


async def test_redelivery_of_a_finished_message_republishes_its_event(
    store: SqlStore, sink: EventList
) -> None:
    """A message redelivered after it was recorded is not resent, but its event goes out again."""
    alpha = simulator("alpha")
    relay = dispatcher(store, sink, alpha)
    await relay.handle(raw())

    assert await relay.handle(raw(), redelivered=True) == Done(None)
    assert len(alpha.sent) == 1
    first, again = sink.events
    assert again.state is State.SENT
    assert again.provider_message_id == first.provider_message_id


async def test_expired_request_is_never_sent(store: SqlStore, sink: EventList) -> None:
    """A request past its expires_at ends expired without reaching a provider."""
    alpha = simulator("alpha")
    past = (datetime.now(UTC) - timedelta(seconds=1)).isoformat()

    outcome = await dispatcher(store, sink, alpha).handle(raw(expires_at=past))

    assert outcome == Done(State.EXPIRED)
    assert alpha.sent == []
    [event] = sink.events
    assert event.state is State.EXPIRED
    assert event.error is not None
    assert event.error.code == "expired"
    stored = await record(store)
    assert stored.state is State.EXPIRED
    assert stored.attempts == []


async def test_transient_failure_fails_over_to_the_next_provider(
    store: SqlStore, sink: EventList
) -> None:
    """A transient error at the first provider is followed by a send at the second."""
    alpha = simulator("alpha", transient_failure_numbers=[TO])
    beta = simulator("beta")

    outcome = await dispatcher(store, sink, alpha, beta).handle(raw())

    assert outcome == Done(State.SENT)
    assert alpha.sent == []
    assert len(beta.sent) == 1
    assert sink.states == [State.SENT]
    assert sink.events[0].provider == "beta"
    stored = await record(store)
    assert [(a.provider, a.outcome) for a in stored.attempts] == [
        ("alpha", "transient"),
        ("beta", "sent"),
    ]
    assert stored.attempts[0].error_code == "alpha:SIM-UNAVAILABLE"


async def test_all_providers_failing_transiently_schedules_a_retry(
    store: SqlStore, sink: EventList
) -> None:
    """When every provider fails transiently, the message is retried after the first delay."""
    alpha = simulator("alpha", transient_failure_numbers=[TO])
    beta = simulator("beta", transient_failure_numbers=[TO])

    outcome = await dispatcher(store, sink, alpha, beta).handle(raw())

    assert isinstance(outcome, Retry)
    assert outcome.delay == pytest.approx(1.0)
    assert outcome.attempt == 1
    [event] = sink.events
    assert event.state is State.ACCEPTED
    assert event.attempt == 2
    assert event.error is not None
    assert event.error.retryable
    stored = await record(store)
    assert stored.state is State.ACCEPTED
    assert [a.outcome for a in stored.attempts] == ["transient", "transient"]


async def test_last_retry_round_failing_transiently_fails_the_message(
    store: SqlStore, sink: EventList
) -> None:
    """With max_attempts=3, rounds 0 and 1 schedule retries and round 2 ends failed."""
    alpha = simulator("alpha", transient_failure_numbers=[TO])
    beta = simulator("beta", transient_failure_numbers=[TO])
    relay = dispatcher(store, sink, alpha, beta)

    assert await relay.handle(raw()) == Retry(delay=1.0, attempt=1)
    assert await relay.handle(raw(), retry_round=1) == Retry(delay=1.0, attempt=2)
    assert await relay.handle(raw(), retry_round=2) == Done(State.FAILED)

    assert sink.states == [State.ACCEPTED, State.ACCEPTED, State.FAILED]
    assert sink.events[-1].attempt == 6
    stored = await record(store)
    assert stored.state is State.FAILED
    assert [a.number for a in stored.attempts] == [1, 2, 3, 4, 5, 6]


async def test_recipient_rejected_fails_without_trying_the_next_provider(
    store: SqlStore, sink: EventList
) -> None:
    """A permanent RecipientRejected ends the message failed; other providers are not asked."""
    alpha = simulator("alpha", permanent_failure_numbers=[TO])
    beta = simulator("beta")

    outcome = await dispatcher(store, sink, alpha, beta).handle(raw())

    assert outcome == Done(State.FAILED)
    assert beta.sent == []
    [event] = sink.events
    assert event.state is State.FAILED
    assert event.provider == "alpha"
    assert event.error is not None
    assert (event.error.code, event.error.retryable) == ("alpha:SIM-INVALID", False)
    stored = await record(store)
    assert [(a.provider, a.outcome) for a in stored.attempts] == [("alpha", "failed")]


async def test_unreadable_success_fails_without_trying_the_next_provider(
    store: SqlStore, sink: EventList
) -> None:
    """A 2xx answer without a message id may mean it was sent: no second provider, ends failed."""
    alpha = RaisingProvider("alpha", UnconfirmedSend("alpha", "bad-response", "201 without a sid"))
    beta = simulator("beta")

    outcome = await dispatcher(store, sink, alpha, beta).handle(raw())

    assert outcome == Done(State.FAILED)
    assert beta.sent == []
    assert sink.events[-1].error is not None
    assert sink.events[-1].error.code == "alpha:bad-response"


async def test_bad_credentials_fail_over_to_the_next_provider(store: SqlStore, sink: EventList) -> None:
    """Credentials refused at one provider say nothing about the number: the next one sends."""
    alpha = RaisingProvider("alpha", AuthenticationFailed("alpha", "20003", "bad token"))
    beta = simulator("beta")

    outcome = await dispatcher(store, sink, alpha, beta).handle(raw())

    assert outcome == Done(State.SENT)
    assert [r.id for r in beta.sent] == ["msg-1"]


async def test_empty_route_fails_the_message(store: SqlStore, sink: EventList) -> None:
    """A route naming no provider cannot send: the message fails with no-provider."""
    relay = dispatcher(store, sink, simulator("alpha"), routes={"*": []})
    assert await relay.handle(raw()) == Done(State.FAILED)
    assert sink.events[0].error is not None
    assert sink.events[0].error.code == "no-provider"


async def test_invalid_request_is_dead_lettered_recorded_and_announced(
    store: SqlStore, sink: EventList
) -> None:
    """An invalid request with a readable id is dead-lettered, kept as a rejection, announced."""
    alpha = simulator("alpha")
    reason = 'field "to": not a valid phone number'

    outcome = await dispatcher(store, sink, alpha).handle(raw("bad-1", to="12345"))

    assert outcome == DeadLetter(reason)
    assert alpha.sent == []
    assert [(m, r) for m, r, _ in await store.rejections()] == [("bad-1", reason)]
    [event] = sink.events
    assert (event.id, event.state) == ("bad-1", State.REJECTED)
    assert event.error is not None
    assert (event.error.code, event.error.message) == ("invalid-request", reason)
    assert await store.get("bad-1") is None


async def test_unreadable_request_is_dead_lettered_without_an_event(
    store: SqlStore, sink: EventList
) -> None:
    """Without an id to report against, the rejection is recorded but no event is published."""
    outcome = await dispatcher(store, sink, simulator("alpha")).handle(b"{not json")

    assert outcome == DeadLetter("invalid json at line 1 col 2")
    assert [(m, r) for m, r, _ in await store.rejections()] == [
        (None, "invalid json at line 1 col 2")
    ]
    assert sink.events == []


async def test_deeply_nested_json_is_dead_lettered(store: SqlStore, sink: EventList) -> None:
    """A request of 60 000 nested arrays is dead-lettered like any other invalid JSON."""
    outcome = await dispatcher(store, sink, simulator("alpha")).handle(b"[" * 60_000)
    assert isinstance(outcome, DeadLetter)


async def test_expiry_before_the_retry_delay_ends_expired_instead_of_retrying(
    store: SqlStore, sink: EventList
) -> None:
    """A retry that would only run after expires_at is not scheduled: the message expires."""
    alpha = simulator("alpha", transient_failure_numbers=[TO])
    retry = RetrySettings(max_attempts=3, delays=[60.0], jitter=0.0)
    soon = (datetime.now(UTC) + timedelta(seconds=30)).isoformat()

    outcome = await dispatcher(store, sink, alpha, retry=retry).handle(raw(expires_at=soon))

    assert outcome == Done(State.EXPIRED)
    assert sink.states == [State.EXPIRED]
    stored = await record(store)
    assert stored.state is State.EXPIRED
    assert [a.outcome for a in stored.attempts] == ["transient"]


async def test_provider_crash_is_treated_as_transient(store: SqlStore, sink: EventList) -> None:
    """An adapter raising a plain exception does not lose the message: failover follows."""
    beta = simulator("beta")
    crashing = CrashingProvider("crash", ProviderSettings(type="crashing"))

    outcome = await dispatcher(store, sink, crashing, beta).handle(raw())

    assert outcome == Done(State.SENT)
    assert len(beta.sent) == 1
    stored = await record(store)
    assert [(a.provider, a.outcome) for a in stored.attempts] == [
        ("crash", "transient"),
        ("beta", "sent"),
    ]
    assert stored.attempts[0].error_code == "crash:internal"
    assert stored.attempts[0].error_message == "RuntimeError"


async def test_provider_crash_alone_schedules_a_retry(store: SqlStore, sink: EventList) -> None:
    """With only a crashing provider, the message is retried, not failed or lost."""
    crashing = CrashingProvider("crash", ProviderSettings(type="crashing"))
    assert await dispatcher(store, sink, crashing).handle(raw()) == Retry(delay=1.0, attempt=1)


async def test_retry_after_longer_than_the_delay_wins(store: SqlStore, sink: EventList) -> None:
    """A provider's Retry-After beyond the configured delay sets the retry delay, rounded up to the next tier."""
    limited = RateLimitedProvider("limited", retry_after=42.0)
    tiers = RetrySettings(max_attempts=3, delays=[1.0, 60.0], jitter=0.0)
    outcome = await dispatcher(store, sink, limited, retry=tiers).handle(raw())
    assert outcome == Retry(delay=60.0, attempt=1)


async def test_retry_after_shorter_than_the_delay_keeps_the_delay(
    store: SqlStore, sink: EventList
) -> None:
    """A Retry-After below the configured delay does not shorten the backoff."""
    limited = RateLimitedProvider("limited", retry_after=0.1)
    outcome = await dispatcher(store, sink, limited).handle(raw())
    assert outcome == Retry(delay=1.0, attempt=1)


async def test_possible_duplicate_carries_into_the_final_event_after_a_retry(
    store: SqlStore, sink: EventList
) -> None:
    """Once a send may have been duplicated, every later event of the message says so."""
    await store.claim(parse_request(raw()))
    await store.start_attempt("msg-1", 1, "flaky")
    relay = dispatcher(store, sink, FlakyProvider("flaky", failures=1))

    assert await relay.handle(raw(), redelivered=True) == Retry(delay=1.0, attempt=1)
    assert await relay.handle(raw(), retry_round=1) == Done(State.SENT)

    assert (await record(store)).possible_duplicate
    assert [e.possible_duplicate for e in sink.events] == [True, True]


async def test_worker_killed_right_after_the_interrupt_still_leaves_the_resend_flagged(
    store: SqlStore, sink: EventList
) -> None:
    """A second crash between interrupting the open attempt and the next send keeps the flag."""
    await store.claim(parse_request(raw()), "alpha")  # worker 1 died inside attempt 1
    await store.claim(parse_request(raw()))
    await store.interrupt_open_attempts("msg-1")  # worker 2 died right after this commit
    alpha = simulator("alpha")

    outcome = await dispatcher(store, sink, alpha).handle(raw(), redelivered=True)

    assert outcome == Done(State.SENT)
    [event] = sink.events
    assert event.possible_duplicate
    assert (await record(store)).possible_duplicate


def _no_answer(name: str = "alpha", **settings: Any) -> RaisingProvider:
    """A provider whose request left and whose answer never came."""
    return RaisingProvider(name, OutcomeUnknown(name, "no-answer", "TimeoutError"), **settings)


async def test_unknown_outcome_fails_without_trying_the_next_provider_by_default(
    store: SqlStore, sink: EventList
) -> None:
    """A send that may have happened is not repeated elsewhere unless allowed: `failed`, not retryable."""
    beta = simulator("beta")

    outcome = await dispatcher(store, sink, _no_answer(), beta).handle(raw())

    assert outcome == Done(State.FAILED)
    assert beta.sent == []
    [event] = sink.events
    assert event.error is not None
    assert (event.error.code, event.error.retryable) == ("alpha:no-answer", False)
    assert not event.possible_duplicate
    stored = await record(store)
    assert [(a.provider, a.outcome) for a in stored.attempts] == [("alpha", "unknown")]


async def test_unknown_outcome_where_allowed_fails_over_flagged(
    store: SqlStore, sink: EventList
) -> None:
    """With retry_unknown_outcome the next provider sends, flagged in record, event and metric."""
    beta = simulator("beta")
    relay = dispatcher(store, sink, _no_answer(retry_unknown_outcome=True), beta)

    assert await relay.handle(raw()) == Done(State.SENT)

    assert len(beta.sent) == 1
    [event] = sink.events
    assert event.possible_duplicate
    stored = await record(store)
    assert stored.possible_duplicate
    assert [(a.provider, a.outcome) for a in stored.attempts] == [
        ("alpha", "unknown"),
        ("beta", "sent"),
    ]
    assert relay.metrics.registry.get_sample_value("smsrelay_possible_duplicates_total") == 1


async def test_unknown_outcome_where_allowed_and_alone_retries_later_flagged(
    store: SqlStore, sink: EventList
) -> None:
    """With no other provider the message waits for a delayed retry, and the retry is flagged."""
    alpha = _no_answer(retry_unknown_outcome=True)
    relay = dispatcher(store, sink, alpha)

    assert await relay.handle(raw()) == Retry(delay=1.0, attempt=1)
    claim = await store.claim(parse_request(raw()))

    assert claim.possible_duplicate
    assert sink.events[0].possible_duplicate


async def test_message_the_store_refuses_is_dead_lettered_at_once(
    store: SqlStore, sink: EventList
) -> None:
    """A store error permanent for this message: DeadLetter with the reason, `rejected` event, no send."""
    async with store.engine.begin() as conn:
        await conn.exec_driver_sql(
            "CREATE TRIGGER no_poison BEFORE INSERT ON messages WHEN NEW.body LIKE '%poison%'"
            " BEGIN SELECT RAISE(ABORT, 'poison'); END"
        )
    alpha = simulator("alpha")

    outcome = await dispatcher(store, sink, alpha).handle(raw(body="poison pill"))

    assert outcome == DeadLetter("the database refused this message (IntegrityError)")
    assert alpha.sent == []
    [event] = sink.events
    assert (event.id, event.state) == ("msg-1", State.REJECTED)
    assert event.error is not None
    assert (event.error.code, event.error.retryable) == ("store-rejected", False)
    assert [m for m, _, _ in await store.rejections()] == ["msg-1"]


async def test_sent_otp_asks_for_its_receipt_deadline(store: SqlStore, sink: EventList) -> None:
    """A sent OTP with resend_after comes back as Done(SENT, resend_after); other kinds do not."""
    relay = dispatcher(store, sink, simulator("alpha"))

    otp = await relay.handle(raw("otp-1", kind="otp", resend_after=30))
    bulk = await relay.handle(raw("bulk-1"))

    assert otp == Done(State.SENT, 30)
    assert bulk == Done(State.SENT, None)


async def test_redelivered_sent_otp_asks_for_its_deadline_again(
    store: SqlStore, sink: EventList
) -> None:
    """A worker that died after recording the send and before parking the deadline: the
    redelivery parks it (the check resends once however many deadlines there are)."""
    relay = dispatcher(store, sink, simulator("alpha"))
    body = raw("otp-1", kind="otp", resend_after=30)
    await relay.handle(body)

    assert await relay.handle(body, redelivered=True) == Done(None, 30)
    assert await relay.handle(body) == Done(None, None)
