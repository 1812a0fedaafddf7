"""Feeds a worker's ``HealthMonitor`` with the receipts every process applied, from the store.

Receipts are applied where they arrive: the API (webhooks) and any worker (SMPP and other
links a provider opens). The worker that routes is rarely that process, so each worker
reads, every ``health.receipt_poll_interval`` seconds, the final receipts kept since its
cursor (``receipts.key``) and feeds them to its monitor. That is the same path for every
provider and process, and needs nothing on the wire.

- One message counts once: its first final receipt (a multipart message's later parts,
  or a carrier's second opinion, do not count again). Delivered or not is the message's
  state at the time it is read when receipts decided it, otherwise that receipt's status.
- A receipt kept before its message was known (it overtook the worker's record of the
  send) is looked at again on each poll until it is linked, for ``WAITING_SECONDS``.
- ``receipt_deadline`` (off by default): a message still ``sent`` that long after its send
  counts as not delivered, for the providers this worker has seen final receipts from:
  a provider that answers 200 and then delivers nothing may stop sending receipts at all,
  while one that never sends receipts must not look dead.
- The cursor starts at the newest receipt when the worker starts: history is not
  replayed (it would be fed as "now" and judged as a fresh collapse).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable, Collection
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Protocol

from smsrelay.errors import StoreError
from smsrelay.logging import get_logger

__all__ = ["FinalReceipt", "ReceiptFeed", "ReceiptSource", "Unanswered"]

log = get_logger(__name__)

# How long a receipt kept without its message is looked at again.
WAITING_SECONDS = 600.0
# Receipts waiting for their message, at most (the oldest are given up first).
MAX_WAITING = 5000
# Rows read per query; a poll reads pages until one is short.
PAGE = 2000


@dataclass(frozen=True, slots=True)
class FinalReceipt:
    """One message's first final receipt, as delivery health counts it.

    ``country`` is None while the receipt waits for its message (then nothing else is known).
    """

    key: int
    provider: str
    country: str | None
    delivered: bool
    latency_seconds: float | None


@dataclass(frozen=True, slots=True)
class Unanswered:
    """A message sent to ``provider`` that has no final receipt; ``at``: its last change."""

    provider: str
    country: str
    at: datetime


class ReceiptSource(Protocol):
    """What the feed reads (``smsrelay.store.health.HealthReads``)."""

    async def last_receipt_key(self) -> int:
        """The newest receipt's key (0 when there is none)."""

    async def final_receipts(
        self, after: int, waiting: Collection[int], limit: int
    ) -> list[FinalReceipt]:
        """First final receipts with key > ``after`` or in ``waiting``, by key."""

    async def unanswered(self, since: datetime, until: datetime, limit: int) -> list[Unanswered]:
        """Messages still ``sent`` whose last change is in (since, until], oldest first."""


class ReceiptSink(Protocol):
    """Where the feed puts what it read (``HealthMonitor.record_receipt``)."""

    def record_receipt(
        self, provider: str, country: str, delivered: bool, latency_seconds: float | None
    ) -> None:
        """Count one final receipt."""


class ReceiptFeed:
    """Polls ``source`` and feeds ``sink``; see the module docstring."""

    def __init__(
        self,
        source: ReceiptSource,
        sink: ReceiptSink,
        interval: float,
        deadline: float | None = None,
        clock: Callable[[], float] = time.monotonic,
        on_polled: Callable[[], None] | None = None,
    ) -> None:
        self.source = source
        self.sink = sink
        self.interval = interval
        self.deadline = deadline
        self.clock = clock
        # Called after each poll in the background (the alerts' check).
        self.on_polled = on_polled
        self.cursor: int | None = None
        self._waiting: dict[int, float] = {}  # receipt key → when first seen unlinked
        self._answering: set[str] = set()  # providers whose final receipts were seen
        self._unanswered_since: datetime | None = None
        self._task: asyncio.Task[None] | None = None
        # Completed polls: a positive signal to wait on instead of sleeping.
        self.polls = 0

    def start(self) -> None:
        """Poll in the background until ``close``."""
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name="health-receipt-feed")

    async def close(self) -> None:
        """Stop polling."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    async def poll(self) -> int:
        """Read once; returns how many receipts and missed deadlines were fed."""
        if self.cursor is None:
            self.cursor = await self.source.last_receipt_key()
            self._unanswered_since = datetime.now(UTC) - timedelta(seconds=self.deadline or 0)
            return 0
        fed = await self._receipts()
        if self.deadline is not None:
            fed += await self._unanswered(self.deadline)
        return fed

    async def _receipts(self) -> int:
        assert self.cursor is not None
        fed = 0
        while True:
            page = await self.source.final_receipts(self.cursor, list(self._waiting), PAGE)
            for receipt in page:
                fed += self._feed(receipt)
            if page:
                self.cursor = max(self.cursor, max(r.key for r in page))
            if len(page) < PAGE:
                break
        horizon = self.clock() - WAITING_SECONDS
        self._waiting = {k: t for k, t in self._waiting.items() if t > horizon}
        return fed

    def _feed(self, receipt: FinalReceipt) -> int:
        if receipt.country is None:
            if receipt.key not in self._waiting and len(self._waiting) >= MAX_WAITING:
                del self._waiting[next(iter(self._waiting))]
            self._waiting.setdefault(receipt.key, self.clock())
            return 0
        self._waiting.pop(receipt.key, None)
        self._answering.add(receipt.provider)
        self.sink.record_receipt(
            receipt.provider, receipt.country, receipt.delivered, receipt.latency_seconds
        )
        return 1

    async def _unanswered(self, deadline: float) -> int:
        assert self._unanswered_since is not None
        until = datetime.now(UTC) - timedelta(seconds=deadline)
        fed = 0
        while True:
            page = await self.source.unanswered(self._unanswered_since, until, PAGE)
            for message in page:
                if message.provider in self._answering:
                    self.sink.record_receipt(message.provider, message.country, False, None)
                    fed += 1
            if len(page) < PAGE:
                self._unanswered_since = until
                break
            self._unanswered_since = page[-1].at
        return fed

    async def _run(self) -> None:
        while True:
            try:
                fed = await self.poll()
            except StoreError as exc:  # the store is down: health waits, sending goes on
                log.warning("health_feed_deferred", error=type(exc).__name__)
            else:
                if fed:
                    log.debug("health_receipts_fed", count=fed)
                if self.on_polled is not None:
                    self.on_polled()
                self.polls += 1
            await asyncio.sleep(self.interval)
