"""What delivery receipts mean for a message: the rules, above the store.

A receipt becomes part of its message's history; the message's state follows its
receipts by these rules (the store applies them inside the transaction that keeps the
receipt, under the message's row lock):

- **Rank.** ``pending`` < ``undelivered`` = ``failed`` < ``delivered``. Per part (a
  receipt without a part speaks for the whole message), the highest-ranked report
  counts; between equal ranks, the first one received. A carrier that reports
  ``undelivered`` and then, having retried, ``delivered`` is believed; nothing is
  believed after ``delivered``.
- **Parts.** A multipart message is ``delivered`` once every part is (the count of
  distinct parts reported delivered reaches ``parts``); otherwise any part that ended
  undelivered or failed decides.
- **Forward only.** A receipt moves a message only up the same ranks: from ``sent``
  (or a ``failed`` send) to the state its receipts decide, from ``undelivered`` or
  ``failed`` to ``delivered``; never down (``delivered`` → ``undelivered`` or back to
  ``sent``) nor sideways. Messages not yet handed to a provider are not moved at all:
  the send's record comes first.
- **Once.** A receipt equal to one already kept (same provider, provider message id,
  part, status, provider status and error code) is dropped: never stored or applied
  twice, whatever bytes carried it (replays with new bytes are refused before, by the
  API's digest of the signed content).

Every state change is a ``StatusEvent``. It is written to the event outbox in the same
transaction and published after the commit (by the API, the worker, or the outbox
drain at start-up), so no crash between the two loses it.
"""

from __future__ import annotations

from collections.abc import Hashable, Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Protocol

from smsrelay.logging import get_logger
from smsrelay.models import EventError, Receipt, ReceiptStatus, State, StatusEvent

if TYPE_CHECKING:
    from smsrelay.metrics import Metrics
    from smsrelay.store.base import PendingEvent, Store

log = get_logger(__name__)

RANK: dict[ReceiptStatus, int] = {
    ReceiptStatus.PENDING: 0,
    ReceiptStatus.UNDELIVERED: 1,
    ReceiptStatus.FAILED: 1,
    ReceiptStatus.DELIVERED: 2,
}
"""How much a report says: a higher rank replaces a lower one, never the reverse."""

STATE_RANK: dict[State, int] = {
    State.SENT: 0,
    State.UNDELIVERED: 1,
    State.FAILED: 1,
    State.DELIVERED: 2,
}
"""The message states receipts may move, ranked as the receipts that lead to them."""

FINAL: dict[ReceiptStatus, State] = {
    ReceiptStatus.DELIVERED: State.DELIVERED,
    ReceiptStatus.UNDELIVERED: State.UNDELIVERED,
    ReceiptStatus.FAILED: State.FAILED,
}


@dataclass(frozen=True, slots=True)
class ReceiptRecord:
    """One kept delivery report."""

    provider: str
    provider_message_id: str | None
    status: ReceiptStatus
    provider_status: str
    error_code: str | None
    part: int | None
    parts: int | None
    at: datetime | None
    received_at: datetime


def resolve(history: Sequence[ReceiptRecord]) -> ReceiptStatus | None:
    """The final status a message's receipts (in the order received) add up to, or None."""
    best: dict[int | None, ReceiptRecord] = {}
    for record in history:
        if record.status is ReceiptStatus.PENDING:
            continue
        held = best.get(record.part)
        if held is None or RANK[record.status] > RANK[held.status]:
            best[record.part] = record
    whole = best.pop(None, None)
    if best:
        statuses = {r.status for r in best.values()}
        parts = max((r.parts or 1 for r in history), default=1)
        if statuses == {ReceiptStatus.DELIVERED} and len(best) >= parts:
            return ReceiptStatus.DELIVERED
        for bad in (ReceiptStatus.FAILED, ReceiptStatus.UNDELIVERED):
            if bad in statuses:
                return bad
    return whole.status if whole else None


def next_state(current: State, history: Sequence[ReceiptRecord]) -> State | None:
    """The state the receipts move the message to, or None when they move it nowhere."""
    if current not in STATE_RANK:
        return None  # not handed to a provider yet: the send's record comes first
    status = resolve(history)
    if status is None:
        return None
    target = FINAL[status]
    return target if STATE_RANK[target] > STATE_RANK[current] else None


def receipt_error(
    provider: str, history: Sequence[ReceiptRecord], status: ReceiptStatus
) -> EventError | None:
    """The error a failed or undelivered message carries: its first report of ``status``."""
    if status is ReceiptStatus.DELIVERED:
        return None
    first = next(r for r in history if r.status is status)
    code = first.error_code or first.provider_status
    detail = f" (error {first.error_code})" if first.error_code else ""
    return EventError(
        code=f"{provider}:{code}",
        message=f"{provider} reported {first.provider_status}{detail}",
        retryable=False,
    )


def identity(receipt: Receipt | ReceiptRecord) -> Hashable:
    """What makes two reports the same report (the "once" rule), whatever carried them."""
    return (
        receipt.provider_message_id,
        receipt.part,
        receipt.status,
        receipt.provider_status[:64],
        receipt.error_code,
    )


class EventSink(Protocol):
    """Where status events go (the dispatcher's sink)."""

    async def publish(self, event: StatusEvent) -> None:
        """Publish one event; raise if it could not be published."""


def observe_delays(metrics: Metrics, committed: Iterable[PendingEvent]) -> None:
    """Count how long after their sends receipts settled messages (committed changes only)."""
    for item in committed:
        if item.delay is not None:
            delay = item.delay
            metrics.send_to_receipt.labels(delay.provider, delay.country).observe(delay.seconds)


async def apply_pending_receipts(
    store: Store,
    events: EventSink,
    message_id: str,
    provider: str,
    provider_message_id: str,
    metrics: Metrics | None = None,
) -> None:
    """For the worker, once a send is recorded: apply receipts that overtook it, publish.

    The state change commits with its event in the outbox; the event is published after
    the commit and then dropped from the outbox. Best effort: on failure the receipts
    stay kept (the next receipt or ``GET /v1/messages/{id}`` applies them) and an
    unpublished event stays in the outbox for the API's drain.
    """
    try:
        pending = await store.match_receipts(message_id, provider, provider_message_id)
        if metrics is not None:
            observe_delays(metrics, pending)
        for item in pending:
            await events.publish(item.event)
        if pending:
            await store.events_published([item.key for item in pending])
    except Exception as exc:  # the send is recorded either way; matching can wait
        log.warning("pending_receipts_deferred", id=message_id, error=type(exc).__name__)
