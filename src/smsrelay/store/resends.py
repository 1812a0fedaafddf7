"""Receipt-deadline resends in SQL: taking a resend's slot, and recording what it sent.

The rules (when a sent OTP is resent, through which provider) are in
``smsrelay.otp.resend_deadline``; this module keeps its two writes atomic:

- ``claim`` takes resend ``n`` of a message and starts its attempt in one transaction,
  under the message's row lock and only while ``messages.resends`` is ``n - 1``: of any
  number of workers checking the same deadline, one resends; and a crash after the
  commit leaves an open attempt that the next check sees.
- ``finish`` closes the attempt as sent and points the message at the new send, in one
  transaction. A message a receipt delivered meanwhile stays ``delivered`` with its
  provider: the resend is recorded on its attempt, never moving the message backwards.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.engine import Row
from sqlalchemy.ext.asyncio import AsyncConnection

from smsrelay.models import AttemptOutcome, EventError, SendResult, State
from smsrelay.store.base import AttemptBill, MessageRecord, PendingEvent, conflicting
from smsrelay.store.schema import attempts, messages
from smsrelay.store.sql import SqlStore, bill_values, first_attempt_row, waiting_receipts

RESENDABLE = frozenset({State.SENT, State.UNDELIVERED, State.FAILED})
"""States a message may be resent from: handed to a provider and not delivered."""


class SqlResends:
    """What a receipt-deadline check reads and writes, over a ``SqlStore``."""

    def __init__(self, store: SqlStore) -> None:
        self.store = store

    async def get(self, message_id: str) -> MessageRecord | None:
        """The message with its attempts (``SqlStore.get``)."""
        return await self.store.get(message_id)

    async def claim(
        self, message_id: str, resend: int, provider: str, number: int, digest: str
    ) -> int | None:
        """Take resend ``resend`` and start its attempt ``number`` at ``provider``; its key.

        None when the resend was taken already (``resends`` is not ``resend - 1``), the
        message is no longer resendable (delivered, gone), or ``digest`` is not the
        request the id was taken for (a forged deadline must not send another text).
        """
        now = datetime.now(UTC)
        async with self.store.transaction() as conn:
            row = await _locked(conn, message_id)
            if (
                row is None
                or row.resends != resend - 1
                or State(row.state) not in RESENDABLE
                or conflicting(row.request_digest, digest)
            ):
                return None
            attempt = {**first_attempt_row(message_id, provider, now), "number": number}
            result = await conn.execute(attempts.insert().values(**attempt))
            await conn.execute(
                update(messages)
                .where(messages.c.id == message_id)
                .values(resends=resend, attempts=number, updated_at=now)
            )
        key = result.inserted_primary_key
        assert key is not None
        return int(key[0])

    async def start_attempt(self, message_id: str, number: int, provider: str) -> int:
        """Another try of a resend already claimed (the next provider, or after a crash)."""
        return await self.store.start_attempt(message_id, number, provider)

    async def interrupt_open_attempts(self, message_id: str) -> None:
        """Close attempts a dead worker left open; flags the message ``possible_duplicate``."""
        await self.store.interrupt_open_attempts(message_id)

    async def finish_attempt(
        self,
        attempt_key: int,
        outcome: AttemptOutcome,
        *,
        error: EventError | None = None,
        bill: AttemptBill | None = None,
    ) -> None:
        """Record a try that did not send (``SqlStore.finish_attempt``)."""
        await self.store.finish_attempt(attempt_key, outcome, error=error, bill=bill)

    async def finish(
        self,
        message_id: str,
        attempt_key: int,
        provider: str,
        result: SendResult,
        bill: AttemptBill | None,
    ) -> tuple[State, bool]:
        """Record the resend as sent; the message's state after it, and whether receipts wait.

        A message still resendable becomes ``sent`` at ``provider``; a delivered one
        keeps its state and provider (receipts of either send still count).
        """
        now = datetime.now(UTC)
        pmid = result.provider_message_id
        async with self.store.transaction() as conn:
            await conn.execute(
                update(attempts)
                .where(attempts.c.key == attempt_key)
                .values(
                    outcome="sent", finished_at=now, provider_message_id=pmid, **bill_values(bill)
                )
            )
            row = await _locked(conn, message_id)
            if row is None or State(row.state) not in RESENDABLE:
                return (State(row.state) if row is not None else State.DELIVERED), False
            await conn.execute(
                update(messages)
                .where(messages.c.id == message_id)
                .values(
                    state=State.SENT.value,
                    provider=provider,
                    provider_message_id=pmid,
                    segments=result.segments,
                    error_code=None,
                    error_message=None,
                    updated_at=now,
                )
            )
            waiting = await waiting_receipts(conn, {message_id: (provider, pmid)})
        return State.SENT, message_id in waiting

    async def match_receipts(
        self, message_id: str, provider: str, provider_message_id: str
    ) -> list[PendingEvent]:
        """Apply receipts that overtook the resend's record (``Store.match_receipts``)."""
        return await self.store.match_receipts(message_id, provider, provider_message_id)

    async def events_published(self, keys: list[int]) -> None:
        """Drop published events from the outbox."""
        await self.store.events_published(keys)


async def _locked(conn: AsyncConnection, message_id: str) -> Row[Any] | None:
    # FOR UPDATE on PostgreSQL (SQLite is serialised): receipts and other checks wait.
    result = await conn.execute(
        select(messages).where(messages.c.id == message_id).with_for_update()
    )
    return result.first()
