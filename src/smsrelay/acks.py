"""Acks of one event-loop turn, sent as few frames as the broker's ``multiple`` flag allows.

A busy worker finishes dozens of deliveries in one turn of its event loop (they share a
group commit and a confirm). One ``basic.ack`` frame each means one socket write each;
instead the acks of a turn are collected and, per channel, every acked delivery below
the lowest delivery still being worked on is acked with one ``multiple`` frame. Those
above it (finished out of order) are acked one by one, in the same turn: no ack waits
for a slow neighbour, so prefetch never fills with finished deliveries.

``multiple`` up to tag T acks every delivery of that channel up to T the broker still
counts as unacked: safe because every such delivery is either acked now or was settled
before (a nack or reject settles it for the broker too), never one still being worked
on (those are tracked from the moment they arrive, in delivery order).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from typing import Protocol

from smsrelay.logging import get_logger

log = get_logger(__name__)


class AckChannel(Protocol):
    """What of an aiormq channel the batcher uses."""

    @property
    def is_closed(self) -> bool: ...

    def basic_ack(
        self, delivery_tag: int, multiple: bool = False, wait: bool = True
    ) -> Awaitable[None]: ...


class AckBatcher:
    """Tracks deliveries being worked on per channel and coalesces their acks."""

    def __init__(self) -> None:
        self._open: dict[AckChannel, set[int]] = {}
        self._due: dict[AckChannel, list[int]] = {}
        self._flusher: asyncio.Task[None] | None = None
        self.frames = 0  # ack frames sent: for tests and curiosity

    def received(self, channel: AckChannel, tag: int) -> None:
        """A delivery arrived: call before anything awaits, so tags register in order."""
        self._open.setdefault(channel, set()).add(tag)

    def settled(self, channel: AckChannel, tag: int) -> None:
        """The delivery was nacked or rejected: no longer being worked on."""
        self._open.get(channel, set()).discard(tag)

    def ack(self, channel: AckChannel, tag: int) -> None:
        """Ack the delivery once this event-loop turn is over."""
        self._open.get(channel, set()).discard(tag)
        self._due.setdefault(channel, []).append(tag)
        if self._flusher is None:
            self._flusher = asyncio.create_task(self._flush())

    async def _flush(self) -> None:
        try:
            await asyncio.sleep(0)  # the rest of this turn's deliveries finish meanwhile
            due, self._due = self._due, {}
        finally:
            self._flusher = None
        for channel, tags in due.items():
            if channel.is_closed:
                # Its deliveries go back to the queue and come again on a new channel.
                self._open.pop(channel, None)
                continue
            working = self._open.get(channel)
            lowest = min(working) if working else None
            tags.sort()
            below = [t for t in tags if lowest is None or t < lowest]
            try:
                if below:
                    await self._send(channel, below[-1], multiple=len(below) > 1)
                for tag in tags[len(below) :]:
                    await self._send(channel, tag, multiple=False)
            except Exception as exc:
                # After a broker restart the old channel is gone: the deliveries come again.
                log.warning("settle_failed", error=type(exc).__name__)

    async def _send(self, channel: AckChannel, tag: int, *, multiple: bool) -> None:
        self.frames += 1
        # Without waiting for the socket to drain: the frame is queued behind what this
        # channel wrote before; a lost ack only means a redelivery, which dedupe absorbs.
        await channel.basic_ack(tag, multiple=multiple, wait=False)
