"""One id, one message: the same id with another request is refused; the API's record is no duplicate."""

from __future__ import annotations

import pytest

from smsrelay.dispatch import DeadLetter, Done
from smsrelay.metrics import Metrics
from smsrelay.models import State, parse_request
from smsrelay.store import Acceptance, SqlStore
from tests.conftest import eventually
from tests.integration.harness import drain_dead, event_log, publish_raw, request, running_worker
from tests.test_dispatch import RETRY, EventList, dispatcher, raw, record, simulator


async def test_same_id_with_another_body_is_dead_lettered_not_dropped(store: SqlStore) -> None:
    """A reused id with a new body is refused with a reason, a `rejected` event and a metric."""
    sink, alpha = EventList(), simulator("alpha")
    relay = dispatcher(store, sink, alpha)
    metrics = relay.metrics
    await relay.handle(raw("login-42", body="Your code is 111111"))

    outcome = await relay.handle(raw("login-42", body="Your code is 222222"))

    assert isinstance(outcome, DeadLetter)
    assert 'id "login-42" was already used for a different request' in outcome.reason
    assert len(alpha.sent) == 1
    assert sink.states == [State.SENT, State.REJECTED]
    error = sink.events[-1].error
    assert error is not None and error.code == "id-conflict"
    assert [(m, r) for m, r, _ in await store.rejections()] == [("login-42", outcome.reason)]
    assert metrics.registry.get_sample_value("smsrelay_id_conflicts_total") == 1
    assert (await record(store, "login-42")).state is State.SENT


@pytest.mark.parametrize(
    "change", [{"to": "+14155550124"}, {"tags": {"user": "7"}}, {"kind": "marketing"}]
)
async def test_same_id_with_another_number_tag_or_kind_is_refused(
    store: SqlStore, change: dict[str, object]
) -> None:
    """Every field that defines the message counts, not only the body."""
    relay = dispatcher(store, EventList(), simulator("alpha"))
    await relay.handle(raw("order-7"))
    assert isinstance(await relay.handle(raw("order-7", **change)), DeadLetter)


async def test_same_id_and_request_redelivered_is_still_a_duplicate(store: SqlStore) -> None:
    """The same request again (a producer's retry, a redelivery) is acked as before: one send."""
    sink, alpha = EventList(), simulator("alpha")
    relay = dispatcher(store, sink, alpha)
    await relay.handle(raw("order-8"))
    assert await relay.handle(raw("order-8")) == Done(None)
    assert await relay.handle(raw("order-8"), redelivered=True) == Done(None)
    assert len(alpha.sent) == 1
    assert State.REJECTED not in sink.states


async def test_row_from_before_digests_is_a_duplicate_whatever_the_body(
    store: SqlStore,
) -> None:
    """A message recorded by the previous version has no digest: unknown, so a duplicate as then."""
    alpha = simulator("alpha")
    relay = dispatcher(store, EventList(), alpha)
    await relay.handle(raw("old-1"))
    async with store.engine.begin() as conn:
        await conn.exec_driver_sql("UPDATE messages SET request_digest = NULL")
    assert await relay.handle(raw("old-1", body="another text")) == Done(None)
    assert len(alpha.sent) == 1


async def test_message_the_api_accepted_is_sent_once_by_the_worker(store: SqlStore) -> None:
    """The API's record of an accepted message is taken over by the worker, sent once, then a duplicate."""
    sink, alpha = EventList(), simulator("alpha")
    relay = dispatcher(store, sink, alpha)
    request = parse_request(raw("api-1"))
    assert await store.accept(request, request.digest()) is Acceptance.NEW

    assert await relay.handle(raw("api-1")) == Done(State.SENT)
    assert await relay.handle(raw("api-1")) == Done(None)
    assert await relay.handle(raw("api-1"), redelivered=True) == Done(None)

    assert len(alpha.sent) == 1
    # The redelivered copy republishes the final event (events are at-least-once).
    assert sink.states == [State.SENT, State.SENT]
    stored = await record(store, "api-1")
    assert [(a.number, a.outcome) for a in stored.attempts] == [(1, "sent")]
    assert await store.accept(request, request.digest()) is Acceptance.KNOWN


async def test_message_the_api_accepted_with_another_body_is_refused_by_the_worker(
    store: SqlStore,
) -> None:
    """A producer publishing straight to AMQP with an id the API holds for another request is refused."""
    relay = dispatcher(store, EventList(), simulator("alpha"))
    request = parse_request(raw("api-2"))
    await store.accept(request, request.digest())
    assert isinstance(await relay.handle(raw("api-2", body="other")), DeadLetter)
    assert await relay.handle(raw("api-2")) == Done(State.SENT)


async def test_otp_reusing_an_id_with_a_new_code_is_refused_when_keyed(store: SqlStore) -> None:
    """With a digest key, `login-<user>` reused for the next OTP is refused instead of lost."""
    alpha = simulator("alpha")
    relay = dispatcher(store, EventList(), alpha)
    relay.digest_key = b"k"
    await relay.handle(raw("login-9", kind="otp", body="Your code is 111111"))
    assert isinstance(
        await relay.handle(raw("login-9", kind="otp", body="Your code is 222222")), DeadLetter
    )
    assert len(alpha.sent) == 1


def test_dispatcher_metrics_start_without_conflicts() -> None:
    """The counter exists from the start, so dashboards see 0 rather than nothing."""
    assert Metrics().registry.get_sample_value("smsrelay_id_conflicts_total") == 0
    assert RETRY.max_attempts == 3


async def test_reused_id_over_amqp_is_dead_lettered_with_a_reason(
    amqp_url: str, sqlite_url: str
) -> None:
    """Through a real worker (group commit): sms.dead gets the copy with x-smsrelay-reason."""
    async with event_log(amqp_url) as events, running_worker(amqp_url, sqlite_url) as rt:
        await publish_raw(amqp_url, [request("reuse-1")])
        await eventually(lambda: events.states("reuse-1") == ["sent"])
        await publish_raw(amqp_url, [request("reuse-1", to="+14155550124")])
        await eventually(lambda: events.states("reuse-1") == ["sent", "rejected"])
        conflicts = rt.metrics.registry.get_sample_value("smsrelay_id_conflicts_total")
    [dead] = await drain_dead(amqp_url)
    assert "already used for a different request" in str(dead.headers["x-smsrelay-reason"])
    assert b"+14155550124" in dead.body
    assert conflicts == 1
