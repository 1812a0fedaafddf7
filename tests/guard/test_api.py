"""Conversion feedback over HTTP reaches the guard; ``GET /v1/guard/blocks`` lists blocks."""

from __future__ import annotations

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
