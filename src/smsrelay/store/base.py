"""The store's interface and the records it returns.

The dispatcher talks only to ``Store``; ``smsrelay.store.sql`` implements it with
SQLAlchemy for SQLite and PostgreSQL. The store never holds an OTP body.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Protocol

from smsrelay.models import AttemptOutcome, EventError, SendRequest, State


@dataclass(frozen=True, slots=True)
class Claim:
    """What the store knew of a request's id when the worker took it.

    ``new`` is False when the id was seen before; ``open_attempt`` is True when an
    attempt was started and never finished, i.e. a worker died mid-send and the
    provider may already have sent the message; ``possible_duplicate`` is True when an
    earlier round already found one.
    """

    new: bool
    state: State
    attempts: int
    open_attempt: bool
    possible_duplicate: bool = False
    # Set when the claim also started attempt 1 (see ``Store.claim``).
    first_attempt: int | None = None


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
    resends: int = 0


class Store(Protocol):
    """Persistence of messages, attempts and rejections."""

    async def claim(self, request: SendRequest, first_provider: str | None = None) -> Claim:
        """Insert the message if its id is new; report what was known otherwise.

        With ``first_provider``, a new message's attempt 1 at that provider is recorded
        as started in the same transaction (its key is ``Claim.first_attempt``): one
        commit fewer before the first send.
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
    ) -> None:
        """Record how an attempt ended."""

    async def interrupt_open_attempts(self, message_id: str) -> None:
        """Mark attempts left ``started`` by a dead worker as ``interrupted``."""

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
    ) -> bool:
        """Set the message's state and outcome; True when receipts are waiting for it.

        With ``closing_attempt``, that attempt is marked ``sent`` (state SENT) or
        ``failed`` in the same transaction, so no crash can leave an attempt recorded
        as sent on a message that still looks unsent.
        """

    async def record_rejection(self, message_id: str | None, reason: str) -> None:
        """Keep a trace of a request that was dead-lettered as invalid."""

    async def get(self, message_id: str) -> MessageRecord | None:
        """The message with its attempts, or None."""

    async def purge(self, older_than: datetime) -> int:
        """Delete messages (and their attempts) last updated before ``older_than``."""

    async def ping(self) -> None:
        """Raise if the database cannot be reached."""

    async def close(self) -> None:
        """Release connections."""
