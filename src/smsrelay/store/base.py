"""The store's interface and the records it returns.

The dispatcher talks only to ``Store``; ``smsrelay.store.sql`` implements it with
SQLAlchemy for SQLite and PostgreSQL. The store never holds an OTP body.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from enum import StrEnum
from typing import TYPE_CHECKING, Protocol

from smsrelay.encoding import Encoded
from smsrelay.models import (
    AttemptOutcome,
    EventError,
    SendRequest,
    SendResult,
    State,
    StatusEvent,
)

if TYPE_CHECKING:
    from smsrelay.routing.candidate import Candidate


@dataclass(frozen=True, slots=True)
class Claim:
    """What the store knew of a request's id when the worker took it.

    ``new`` is False when the id was seen before; ``open_attempt`` is True when an
    attempt was started and never finished, i.e. a worker died mid-send and the
    provider may already have sent the message; ``possible_duplicate`` is True when an
    earlier round already found one (the message's flag, or an ``interrupted`` attempt).
    ``conflict`` is True when the id was first taken
    for a different request (another digest): this one must be refused, not sent.

    A message the API accepted and no worker has taken yet is claimed as ``new``: the
    API's record is a promise, not a sign that the message was handled.
    """

    new: bool
    state: State
    attempts: int
    open_attempt: bool
    possible_duplicate: bool = False
    # Set when the claim also started attempt 1 (see ``Store.claim``).
    first_attempt: int | None = None
    conflict: bool = False


class Acceptance(StrEnum):
    """What the store knew of an id when the API accepted a request for it."""

    # Recorded now, for a worker to claim: publish it.
    NEW = "new"
    # The same request was accepted before and no worker has taken it yet: publishing
    # it again is harmless (the worker dedupes) and covers a publish that failed.
    QUEUED = "queued"
    # The same request (or one recorded before digests existed) was taken by a worker.
    KNOWN = "known"
    # The id was taken for a different request.
    CONFLICT = "conflict"


def conflicting(recorded: str | None, digest: str | None) -> bool:
    """True when two request digests are both known and differ (unknown is no conflict)."""
    return recorded is not None and digest is not None and recorded != digest


@dataclass(frozen=True, slots=True)
class AttemptRecord:
    """One try at one provider."""

    number: int
    provider: str
    outcome: AttemptOutcome
    started_at: datetime
    finished_at: datetime | None
    provider_message_id: str | None
    error_code: str | None
    error_message: str | None
    # The body as sent to this provider: "gsm7"/"ucs2" and parts; None when not recorded.
    sent_encoding: str | None = None
    sent_parts: int | None = None
    # parts x price when planned, and the provider's own figure; None when unknown.
    estimated_cost: Decimal | None = None
    currency: str | None = None
    actual_cost: Decimal | None = None
    actual_currency: str | None = None


def attempt_bill(
    candidate: Candidate | None, result: SendResult | None = None
) -> AttemptBill | None:
    """What an attempt (or a resend) sends and costs: the plan's estimate, the answer's."""
    if candidate is None:
        return None
    return AttemptBill(
        encoded=candidate.encoded,
        estimated_cost=candidate.estimated_cost,
        currency=candidate.currency,
        actual_cost=result.cost if result else None,
        actual_currency=result.currency if result else None,
    )


@dataclass(frozen=True, slots=True)
class AttemptBill:
    """What one attempt sends and costs, recorded when the attempt is closed.

    ``encoded``: the body as written (kept on the message) and as sent (on the attempt);
    ``estimated_cost``: parts x price from the plan; ``actual_cost``: the provider's answer.
    """

    encoded: Encoded
    estimated_cost: Decimal | None = None
    currency: str | None = None
    actual_cost: Decimal | None = None
    actual_currency: str | None = None


@dataclass(frozen=True, slots=True)
class MessageRecord:
    """What happened to one message: its state and every attempt."""

    id: str
    to: str
    country: str
    kind: str
    state: State
    provider: str | None
    provider_message_id: str | None
    segments: int | None
    error_code: str | None
    error_message: str | None
    possible_duplicate: bool
    created_at: datetime
    updated_at: datetime
    tags: dict[str, str] = field(default_factory=dict)
    attempts: list[AttemptRecord] = field(default_factory=list)
    # The body as written: "gsm7"/"ucs2" and parts; None when not recorded.
    original_encoding: str | None = None
    original_parts: int | None = None
    resends: int = 0


@dataclass(frozen=True, slots=True)
class ReceiptDelay:
    """How long after the provider took the send came the receipt that settled it."""

    provider: str
    country: str
    seconds: float


@dataclass(frozen=True, slots=True)
class PendingEvent:
    """A status event committed to the outbox and not yet known to be published.

    Publish ``event``, then hand ``key`` to ``Store.events_published``; until then a
    drain of the outbox publishes it (at least once). ``delay`` is set when receipts
    just settled the message (``smsrelay_send_to_receipt_seconds``), never by a drain.
    """

    key: int
    event: StatusEvent
    delay: ReceiptDelay | None = None


class Store(Protocol):
    """Persistence of messages, attempts and rejections.

    Every method raises ``StoreUnavailable`` (try again later) or ``StoreRejected``
    (these values can never be stored) from ``smsrelay.errors``, never a driver's error.
    """

    async def claim(
        self, request: SendRequest, first_provider: str | None = None, digest: str | None = None
    ) -> Claim:
        """Insert the message if its id is new; report what was known otherwise.

        With ``first_provider``, a new message's attempt 1 at that provider is recorded
        as started in the same transaction (its key is ``Claim.first_attempt``): one
        commit fewer before the first send. ``digest`` (``SendRequest.digest``) is kept
        with the message; a known id with another digest is claimed as a ``conflict``.
        """

    async def start_attempt(self, message_id: str, number: int, provider: str) -> int:
        """Record that attempt ``number`` at ``provider`` begins; returns its key."""

    async def finish_attempt(
        self,
        attempt_key: int,
        outcome: AttemptOutcome,
        *,
        provider_message_id: str | None = None,
        error: EventError | None = None,
        bill: AttemptBill | None = None,
    ) -> None:
        """Record how an attempt ended (with ``bill``: what it sent and cost)."""

    async def interrupt_open_attempts(self, message_id: str) -> None:
        """Mark attempts left ``started`` by a dead worker as ``interrupted``.

        The message is flagged ``possible_duplicate`` in the same transaction, so the
        flag outlives any number of further crashes.
        """

    async def finish_message(
        self,
        message_id: str,
        state: State,
        *,
        provider: str | None = None,
        provider_message_id: str | None = None,
        segments: int | None = None,
        error: EventError | None = None,
        possible_duplicate: bool = False,
        closing_attempt: int | None = None,
        bill: AttemptBill | None = None,
        trace_context: str | None = None,
    ) -> bool:
        """Set the message's state and outcome; True when receipts are waiting for it.

        ``bill`` goes with ``closing_attempt`` (its encoding, parts and costs) and the
        message (the body's encoding and parts as written), in the same transaction.

        With ``closing_attempt``, that attempt is marked ``sent`` (state SENT) or
        ``failed`` in the same transaction, so no crash can leave an attempt recorded
        as sent on a message that still looks unsent. ``trace_context`` (a W3C
        traceparent) is kept for receipts' spans to link to.
        """

    async def match_receipts(
        self, message_id: str, provider: str, provider_message_id: str
    ) -> list[PendingEvent]:
        """Apply receipts that overtook the send's record (``finish_message`` said so).

        The state change commits with its event in the outbox (see ``smsrelay.receipts``);
        publish what is returned, then call ``events_published``.
        """

    async def events_published(self, keys: Sequence[int]) -> None:
        """Drop events from the outbox once they are published."""

    async def record_rejection(self, message_id: str | None, reason: str) -> None:
        """Keep a trace of a request that was dead-lettered as invalid."""

    async def record_encoding(self, message_id: str, attempt_key: int, encoded: Encoded) -> None:
        """Keep the body's encoding and parts as written (message) and as sent (attempt)."""

    async def get(self, message_id: str) -> MessageRecord | None:
        """The message with its attempts, or None."""

    async def purge(self, older_than: datetime) -> int:
        """Delete messages (and their attempts) last updated before ``older_than``."""

    async def ping(self) -> None:
        """Raise if the database cannot be reached."""

    async def close(self) -> None:
        """Release connections."""
