"""Verifications and feedback over AMQP: requests on sms.verify.*, answers to reply_to."""

from __future__ import annotations

import asyncio
import json
import re
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import aio_pika

from smsrelay import topology as t
from tests.conftest import eventually
from tests.integration.harness import running_worker, simulator
from tests.otp.conftest import VERIFICATION_KEY


class Caller:
    """An AMQP-only service: publishes requests and awaits each answer by correlation id."""

    def __init__(self, exchange: Any, reply_to: str) -> None:
        self.exchange = exchange
        self.reply_to = reply_to
        self.answers: dict[str, asyncio.Future[dict[str, Any]]] = {}

    async def on_answer(self, message: Any) -> None:
        future = self.answers.pop(message.correlation_id, None)
        if future is not None:
            future.set_result(json.loads(message.body))

    async def ask(self, routing_key: str, body: bytes | dict[str, Any]) -> dict[str, Any]:
        """Publish one request and return its answer."""
        cid = uuid.uuid4().hex
        future: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self.answers[cid] = future
        raw = body if isinstance(body, bytes) else json.dumps(body).encode()
        await self.exchange.publish(
            aio_pika.Message(raw, correlation_id=cid, reply_to=self.reply_to),
            routing_key=routing_key,
        )
        return await asyncio.wait_for(future, timeout=30)


@asynccontextmanager
async def caller(amqp_url: str) -> AsyncIterator[Caller]:
    """A ``Caller`` with its own exclusive reply queue."""
    async with await aio_pika.connect(amqp_url) as connection:
        channel = await connection.channel(publisher_confirms=True)
        exchange = await t.declare_send_topology(channel)
        replies = await channel.declare_queue(exclusive=True)
        me = Caller(exchange, replies.name)
        await replies.consume(me.on_answer, no_ack=True)
        yield me


async def test_verification_over_amqp_sends_checks_and_feeds_back(
    amqp_url: str, sqlite_url: str
) -> None:
    """start sends the code on the lane, check approves it once, feedback is recorded."""
    overrides = {"verification": {"key": VERIFICATION_KEY}}
    async with running_worker(amqp_url, sqlite_url, **overrides) as rt, caller(amqp_url) as me:
        started = await me.ask(t.VERIFY_START_KEY, {"to": "+14155550123", "code_length": 7})
        assert started["status"] == "pending", started
        sent = simulator(rt, "simulator").sent
        await eventually(lambda: len(sent) == 1)
        match = re.search(r"\d{7}", sent[0].body)
        assert match is not None and sent[0].id == started["message_id"]
        wrong = "0000000" if match.group(0) != "0000000" else "1111111"
        denied = await me.ask(t.VERIFY_CHECK_KEY, {"id": started["id"], "code": wrong})
        approved = await me.ask(t.VERIFY_CHECK_KEY, {"id": started["id"], "code": match.group(0)})
        assert (denied["status"], approved["status"]) == ("denied", "approved")
        again = await me.ask(t.VERIFY_CHECK_KEY, {"id": started["id"], "code": match.group(0)})
        assert again["error"]["kind"] == "already_approved"
        feedback = await me.ask(t.FEEDBACK_KEY, {"id": started["message_id"]})
        assert feedback == {"id": started["message_id"], "converted": True}


async def test_bad_amqp_requests_get_an_error_answer(amqp_url: str, sqlite_url: str) -> None:
    """Not JSON, an unknown field, an unknown id or key: an `invalid`/`not_found` answer each."""
    overrides = {"verification": {"key": VERIFICATION_KEY}}
    async with running_worker(amqp_url, sqlite_url, **overrides), caller(amqp_url) as me:
        assert (await me.ask(t.VERIFY_START_KEY, b"{not json"))["error"]["kind"] == "invalid"
        extra = await me.ask(t.VERIFY_START_KEY, {"to": "+14155550123", "x": 1})
        assert extra["error"]["kind"] == "invalid"
        unknown = await me.ask(t.VERIFY_CHECK_KEY, {"id": "vf-" + "0" * 32, "code": "123456"})
        assert unknown["error"]["kind"] == "not_found"
        missing = await me.ask(t.FEEDBACK_KEY, {"id": "no-such-message"})
        assert missing["error"]["kind"] == "not_found"
        other = await me.ask("sms.verify.other", {})
        assert other["error"]["kind"] == "invalid"
        big = await me.ask(t.VERIFY_START_KEY, b" " * 5000)
        assert big["error"]["kind"] == "invalid"
