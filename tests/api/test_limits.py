"""Request bodies held in memory are bounded: per route, and all requests together."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from smsrelay.api.limits import BodyBudget, BodyLimits
from smsrelay.store import SqlStore
from tests.api.support import Api, MemoryPublisher, api_settings, auth, running_api

BUDGET = 64 * 1024


@pytest.fixture
async def tight(store: SqlStore, sqlite_url: str) -> AsyncIterator[Api]:
    """The app with a 64 KiB budget for all request bodies together."""
    settings = api_settings(sqlite_url, api_limits={"body_budget_bytes": BUDGET})
    async with running_api(settings, store, MemoryPublisher()) as api:
        yield api


def held_open(first: bytes, gate: asyncio.Event) -> AsyncIterator[bytes]:
    """A request body that sends ``first``, then waits for ``gate`` before its last byte."""

    async def body() -> AsyncIterator[bytes]:
        yield first
        await gate.wait()
        yield b"}"

    return body()


async def test_bodies_beyond_the_budget_are_refused_with_503(tight: Api) -> None:
    """While one request holds 40 KiB of a 64 KiB budget, another 40 KiB is 503 Retry-After."""
    gate = asyncio.Event()
    holding = asyncio.create_task(
        tight.client.post("/v1/messages", content=held_open(b"x" * 40_000, gate), headers=auth())
    )
    for _ in range(200):  # until the first body is held (a positive signal, not a sleep)
        if budget_of(tight).held:
            break
        await asyncio.sleep(0.01)
    refused = await tight.client.post(
        "/v1/messages", content=held_open(b"y" * 40_000, asyncio.Event()), headers=auth()
    )
    gate.set()
    await holding
    assert refused.status_code == 503
    assert refused.headers["retry-after"] == "5" and refused.headers["connection"] == "close"
    assert budget_of(tight).held == 0


async def test_budget_is_given_back_when_a_request_ends(tight: Api) -> None:
    """Bytes a finished request held are free again: many requests in turn all get through."""
    for n in range(5):
        body = b'{"id":"m-%d","to":"+14155550123","body":"' % n + b"x" * 1500 + b'"}'
        assert (await tight.client.post("/v1/messages", content=body, headers=auth())).status_code == 202
    assert budget_of(tight).held == 0


async def test_declared_length_over_the_budget_is_refused_unread(tight: Api) -> None:
    """A Content-Length beyond what the budget has left is 503 before a byte is read."""
    budget_of(tight).held = BUDGET - 1000
    try:
        answer = await tight.client.post(
            "/v1/messages", content=b"x" * 2000, headers={**auth(), "Content-Length": "2000"}
        )
    finally:
        budget_of(tight).held = 0
    assert answer.status_code == 503


async def test_declared_length_over_the_route_limit_is_413_unread(api: Api) -> None:
    """A receipt declaring more than the largest body is 413 with Connection: close."""
    answer = await api.client.post("/v1/receipts/twilio", content=b"x" * (1024 * 1024 + 1))
    assert answer.status_code == 413 and answer.headers["connection"] == "close"


def test_route_limit_is_the_longest_matching_prefix() -> None:
    """/v1/messages has its own 64 KiB limit; other routes have the global one."""
    limits = BodyLimits(
        lambda *_: None,  # type: ignore[arg-type,return-value]
        budget=BodyBudget(1 << 20),
        max_body=1 << 20,
        route_limits={"/v1/messages": 65536},
    )
    assert limits.limit_for("/v1/messages") == 65536
    assert limits.limit_for("/v1/receipts/twilio") == 1 << 20


def budget_of(api: Api) -> BodyBudget:
    """The budget of the app's BodyLimits middleware."""
    for middleware in api.app.user_middleware:
        if middleware.cls is BodyLimits:
            budget: BodyBudget = middleware.kwargs["budget"]
            return budget
    raise AssertionError("no BodyLimits middleware")
