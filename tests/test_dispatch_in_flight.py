"""Another delivery of an id in flight waits for the original's outcome (issue 7, item 5).

The original is handled inside ``Dispatcher.process``; its block stands for the
transport carrying out the outcome (publishing a retry, acking). A copy that arrives
meanwhile (the broker's redelivery after a connection loss) must not be settled before
that block is done, and takes over when it fails.
"""

from __future__ import annotations

import asyncio

import pytest

from smsrelay.dispatch import DeadLetter, Done, Retry
from smsrelay.models import State
from smsrelay.store import SqlStore
from tests.test_dispatch import EventList, FlakyProvider, dispatcher, raw, record


@pytest.fixture
def sink() -> EventList:
    """The events the dispatcher published."""
    return EventList()


async def test_copy_waits_until_the_original_is_carried_out(
    store: SqlStore, sink: EventList
) -> None:
    """A redelivered copy of an id in flight is settled only after the original's outcome is recorded and carried out."""
    relay = dispatcher(store, sink, FlakyProvider("alpha", failures=0))
    async with relay.process(raw()) as outcome:
        assert outcome == Done(State.SENT)
        copy = asyncio.create_task(relay.handle(raw(), redelivered=True))
        await asyncio.sleep(0.05)
        assert not copy.done(), "the copy was settled while the original was being carried out"
    assert await copy == Done(None)
    assert sink.states == [State.SENT]


async def test_copy_takes_over_when_the_original_fails(store: SqlStore, sink: EventList) -> None:
    """When carrying out the original fails (its retry could not be published), the live copy sends the message."""
    relay = dispatcher(store, sink, FlakyProvider("alpha", failures=1))
    copy: asyncio.Task[object] | None = None
    try:
        async with relay.process(raw()) as outcome:
            assert isinstance(outcome, Retry)
            copy = asyncio.create_task(relay.handle(raw(), redelivered=True))
            await asyncio.sleep(0.05)
            assert not copy.done()
            raise ConnectionError("the channel died before the retry was published")
    except ConnectionError:
        pass
    assert copy is not None
    assert await copy == Done(State.SENT)
    assert (await record(store)).state is State.SENT


async def test_copy_with_other_content_is_refused_as_an_id_conflict(
    store: SqlStore, sink: EventList
) -> None:
    """Another request under the id in flight waits for the original, then is refused, not acked as a duplicate."""
    relay = dispatcher(store, sink, FlakyProvider("alpha", failures=0))
    async with relay.process(raw()) as outcome:
        assert outcome == Done(State.SENT)
        other = asyncio.create_task(relay.handle(raw(body="another text")))
        await asyncio.sleep(0.05)
        assert not other.done()
    refused = await other
    assert isinstance(refused, DeadLetter) and "different request" in refused.reason
    assert sink.states == [State.SENT, State.REJECTED]
