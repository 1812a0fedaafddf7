"""``smsrelay resend``: send a ``failed`` message again, under the same id.

The record is moved back to ``accepted`` (``resends`` counts it) and the stored
request is published to ``sms`` as one more retry round (``x-smsrelay-attempt: 1``),
which the worker continues like any retry: the attempts go on numbering, and the
events and the record tell the rest. OTP messages cannot be resent: their text is
never kept (a fresh code is the answer anyway).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import timedelta

import aio_pika

from smsrelay import brokers, publish_time
from smsrelay import topology as t
from smsrelay.models import SendRequest, State
from smsrelay.store import SqlStore

_DURATION = re.compile(r"^(\d{1,6})([smhd])$")
_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days"}


def parse_duration(text: str) -> timedelta:
    """``90s``, ``15m``, ``1h``, ``2d`` as a timedelta; ``ValueError`` otherwise."""
    match = _DURATION.match(text.strip())
    if match is None:
        raise ValueError(f"{text!r} is not a duration like 30m, 1h or 2d")
    return timedelta(**{_UNITS[match.group(2)]: int(match.group(1))})


@dataclass(frozen=True)
class Outcome:
    """What became of one id: resent, or the problem that stopped it."""

    id: str
    problem: str | None = None


async def resend(store: SqlStore, url: str, ids: list[str]) -> list[Outcome]:
    """Resend each failed message of ``ids``; one outcome per id, in order."""
    async with await brokers.connect(url) as connection:
        channel = await connection.channel(publisher_confirms=True)
        exchange = await t.declare_send_topology(channel)
        outcomes = []
        for message_id in ids:
            problem = await _why_not(store, message_id)
            request = None if problem else await store.reopen_failed(message_id)
            if request is None:
                outcomes.append(Outcome(message_id, problem or "its text was not kept (OTP)"))
                continue
            try:
                await exchange.publish(_message(request), routing_key=t.SEND_ROUTING_KEY)
            except BaseException:
                await store.undo_reopen(message_id)
                raise
            outcomes.append(Outcome(message_id))
    return outcomes


async def _why_not(store: SqlStore, message_id: str) -> str | None:
    record = await store.get(message_id)
    if record is None:
        return "no message with this id"
    if record.state is not State.FAILED:
        return f"it is {record.state.value}, not failed"
    if record.kind == "otp":
        return "an OTP's text is never kept: ask for a new code instead"
    return None


def _message(request: SendRequest) -> aio_pika.Message:
    headers, timestamp = publish_time.stamp()  # a resend is a new publish
    return aio_pika.Message(
        request.to_wire(),
        headers={**headers, t.ATTEMPT_HEADER: 1},
        content_type="application/json",
        delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
        message_id=request.id,
        timestamp=timestamp,
    )
