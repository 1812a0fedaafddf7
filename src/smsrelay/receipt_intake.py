"""Receipts that reach the worker over a provider's own link (SMPP ``deliver_sm``).

``StoreReceiptSink`` is the ``ReceiptSink`` the worker hands its providers at start: it
applies receipts exactly as ``POST /v1/receipts/{provider}`` does (``ReceiptStore.
accepting``: kept, matched to their message, early ones kept for later, the state
settled, one digest per receipt so a receipt the SMSC sends twice is applied once),
publishes the state changes and counts them in ``smsrelay_receipts``.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from datetime import UTC, datetime

from smsrelay.metrics import Metrics
from smsrelay.models import Receipt
from smsrelay.receipts import EventSink
from smsrelay.store.receipts import ReceiptStore


class StoreReceiptSink:
    """Applies receipts to the store and publishes the resulting events."""

    def __init__(self, receipts: ReceiptStore, events: EventSink, metrics: Metrics) -> None:
        self.receipts = receipts
        self.events = events
        self.metrics = metrics

    async def deliver(self, provider: str, digest: str, receipts: Sequence[Receipt]) -> None:
        """Store ``receipts`` and publish the changes; ``StaleReceipt`` when seen before."""
        now = datetime.now(UTC)
        async with self.receipts.accepting(provider, digest, receipts, now) as changes:
            # One event per message, published together: one after the other, a batch
            # of receipts waits a confirm round trip per message.
            await asyncio.gather(*(self.events.publish(event) for event in changes))
        for receipt in receipts:
            self.metrics.receipts.labels(provider, receipt.status.value).inc()
