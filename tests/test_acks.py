"""AckBatcher: one turn's acks in as few frames as ``multiple`` allows, never one too many."""

from __future__ import annotations

import asyncio

from smsrelay.acks import AckBatcher


class Channel:
    """Records the ack frames an aiormq channel would write."""

    def __init__(self) -> None:
        self.is_closed = False
        self.frames: list[tuple[int, bool]] = []

    async def basic_ack(self, delivery_tag: int, multiple: bool = False, wait: bool = True) -> None:
        assert not wait
        self.frames.append((delivery_tag, multiple))


def acked(frames: list[tuple[int, bool]], delivered: range) -> set[int]:
    """The tags the broker counts as acked after ``frames``."""
    done: set[int] = set()
    for tag, multiple in frames:
        done |= {t for t in delivered if t <= tag} if multiple else {tag}
    return done


async def test_a_turns_acks_go_out_as_one_multiple_frame() -> None:
    channel, acks = Channel(), AckBatcher()
    for tag in range(1, 101):
        acks.received(channel, tag)
    for tag in range(1, 101):
        acks.ack(channel, tag)
    await asyncio.sleep(0.01)
    assert channel.frames == [(100, True)]


async def test_never_acks_a_delivery_still_being_worked_on() -> None:
    channel, acks = Channel(), AckBatcher()
    for tag in range(1, 11):
        acks.received(channel, tag)
    for tag in (1, 2, 3, 5, 6, 9):  # 4, 7, 8 and 10 still being worked on
        acks.ack(channel, tag)
    await asyncio.sleep(0.01)
    assert acked(channel.frames, range(1, 11)) == {1, 2, 3, 5, 6, 9}
    # Finished out of order: acked at once, not held for the slow neighbour.
    assert channel.frames == [(3, True), (5, False), (6, False), (9, False)]


async def test_a_nacked_delivery_does_not_hold_back_the_multiple_ack() -> None:
    channel, acks = Channel(), AckBatcher()
    for tag in range(1, 6):
        acks.received(channel, tag)
    acks.settled(channel, 1)  # nacked: settled for the broker
    for tag in range(2, 6):
        acks.ack(channel, tag)
    await asyncio.sleep(0.01)
    assert channel.frames == [(5, True)]


async def test_a_closed_channel_gets_no_ack() -> None:
    channel, acks = Channel(), AckBatcher()
    acks.received(channel, 1)
    acks.ack(channel, 1)
    channel.is_closed = True
    await asyncio.sleep(0.01)
    assert channel.frames == []
