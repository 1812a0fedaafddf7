"""Conversion feedback over HTTP reaches the guard; ``GET /v1/guard/blocks`` lists blocks."""

from __future__ import annotations

import re

from smsrelay.guard import Guard, Observation
from smsrelay.store import SqlStore
from tests.api.support import MemoryPublisher, auth, running_api
from tests.guard.conftest import Clock, local_guard
from tests.otp.conftest import otp_settings

NUMBER = "+447400123456"


async def test_feedback_credits_the_guard_and_blocks_are_listed(
    store: SqlStore, sqlite_url: str
) -> None:
    """POST /v1/messages/{id}/feedback credits the message's prefix once; the blocks endpoint
    shows a block's rule, figure and end."""
    guard = local_guard(Clock(), number={"limit": 1})
    settings = otp_settings(sqlite_url, key="k" * 16)
    async with running_api(settings, store, MemoryPublisher(), pumping_guard=guard) as api:
        sent = await api.client.post(
            "/v1/messages",
            json={"id": "otp-1", "to": NUMBER, "body": "code 1", "kind": "otp"},
            headers=auth(),
        )
        assert sent.status_code == 202, sent.text
        await guard.screen("otp-1", NUMBER, "GB", 0)  # as the worker does
        answer = await api.client.post("/v1/messages/otp-1/feedback", headers=auth())
        assert answer.status_code == 200
        assert not await guard.converted("otp-1")  # credited already, by the feedback
        await guard.state.block("+44740012", "conversion", "0 of 20 OTPs converted", guard.clock())
        listed = (await api.client.get("/v1/guard/blocks", headers=auth())).json()
    assert listed["mode"] == "enforce"
    assert [(b["prefix"], b["rule"], b["strikes"]) for b in listed["blocks"]] == [
        ("+44740012", "guard-conversion", 1)
    ]
    assert listed["blocks"][0]["detail"] == "0 of 20 OTPs converted"


async def test_an_approved_check_credits_the_guard(store: SqlStore, sqlite_url: str) -> None:
    """A verification whose code is approved counts as the OTP's conversion; a denied one does not."""
    guard = local_guard(Clock())
    publisher = MemoryPublisher()
    settings = otp_settings(sqlite_url)
    async with running_api(settings, store, publisher, pumping_guard=guard) as api:
        started = (
            await api.client.post("/v1/verifications", json={"to": NUMBER}, headers=auth())
        ).json()
        await guard.screen(started["message_id"], NUMBER, "GB", 0)  # as the worker does
        code = re.search(r"\d{4,10}", publisher.requests[-1].body)
        assert code is not None
        wrong = "0" * len(code.group(0)) if code.group(0) != "0" * len(code.group(0)) else "1" * 6
        path = f"/v1/verifications/{started['id']}/check"
        await api.client.post(path, json={"code": wrong}, headers=auth())
        assert not (await guard.state.observe(_probe(guard))).conversions_seen
        answer = await api.client.post(path, json={"code": code.group(0)}, headers=auth())
        assert answer.json()["status"] == "approved"
        assert (await guard.state.observe(_probe(guard))).conversions_seen == 1


def _probe(guard: Guard) -> Observation:
    return Observation("probe", "+14155550123", "+1415555", "US", 0, guard.clock())
