"""Verifications and conversion feedback in the database (SQL for ``smsrelay.otp``).

Checks count their attempt with one conditional UPDATE, so concurrent guesses against
one verification cannot exceed its attempt limit.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import func, insert, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Row
from sqlalchemy.ext.asyncio import AsyncConnection

from smsrelay.otp.verify import CheckResult, Verification, VerificationStatus, code_matches
from smsrelay.store.schema import conversions, messages, verifications
from smsrelay.store.sql import SqlStore


def _utc(value: datetime) -> datetime:
    # SQLite keeps wall time without the offset; everything written here is UTC.
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


@dataclass(frozen=True, slots=True)
class NewCode:
    """A code to record: its keyed hash, its salt and the message that carries it."""

    code_hash: bytes
    salt: bytes
    message_id: str


@dataclass(frozen=True, slots=True)
class Checked:
    """The outcome of one check, and the message whose code it was."""

    result: CheckResult
    attempts_left: int
    message_id: str
    # True when an earlier check approved it: this one evaluated nothing.
    already_approved: bool = False


@dataclass(frozen=True, slots=True)
class Conversion:
    """OTP messages sent in a window and how many of them were used."""

    sent: int
    converted: int

    @property
    def rate(self) -> float:
        """converted / sent (0 when nothing was sent)."""
        return self.converted / self.sent if self.sent else 0.0


class VerificationStore:
    """Reads and writes ``verifications`` and ``conversions`` on the store's engine."""

    def __init__(self, store: SqlStore) -> None:
        self.store = store

    async def sends_since(self, to: str, since: datetime) -> int:
        """Codes sent to ``to`` by verifications created since ``since``."""
        async with self.store.reading() as conn:
            total = await conn.scalar(
                select(func.coalesce(func.sum(verifications.c.sends), 0)).where(
                    verifications.c.to == to, verifications.c.created_at >= _utc(since)
                )
            )
        return int(total or 0)

    async def open_for(self, to: str, now: datetime) -> Verification | None:
        """The latest pending, unexpired verification of ``to``, if any."""
        async with self.store.reading() as conn:
            row = (
                await conn.execute(
                    select(verifications)
                    .where(
                        verifications.c.to == to,
                        verifications.c.status == VerificationStatus.PENDING.value,
                        verifications.c.expires_at > _utc(now),
                    )
                    .order_by(verifications.c.created_at.desc())
                    .limit(1)
                )
            ).first()
        return _verification(row) if row is not None else None

    async def get(self, verification_id: str) -> Verification | None:
        """The verification, or None."""
        async with self.store.reading() as conn:
            row = (
                await conn.execute(
                    select(verifications).where(verifications.c.id == verification_id)
                )
            ).first()
        return _verification(row) if row is not None else None

    async def create(
        self,
        verification_id: str,
        to: str,
        country: str,
        code: NewCode,
        *,
        max_attempts: int,
        now: datetime,
        expires_at: datetime,
    ) -> None:
        """Record a new pending verification whose first code was just generated."""
        async with self.store.transaction() as conn:
            await conn.execute(
                insert(verifications).values(
                    id=verification_id,
                    to=to,
                    country=country,
                    status=VerificationStatus.PENDING.value,
                    code_hash=code.code_hash,
                    salt=code.salt,
                    attempts=0,
                    max_attempts=max_attempts,
                    sends=1,
                    message_id=code.message_id,
                    created_at=_utc(now),
                    expires_at=_utc(expires_at),
                    last_sent_at=_utc(now),
                    updated_at=_utc(now),
                )
            )

    async def resend(
        self, verification_id: str, code: NewCode, *, now: datetime, sent_before: datetime
    ) -> bool:
        """Replace the code (the old one stops working); False within the cooldown."""
        async with self.store.transaction() as conn:
            result = await conn.execute(
                update(verifications)
                .where(
                    verifications.c.id == verification_id,
                    verifications.c.status == VerificationStatus.PENDING.value,
                    verifications.c.last_sent_at <= _utc(sent_before),
                )
                .values(
                    code_hash=code.code_hash,
                    salt=code.salt,
                    message_id=code.message_id,
                    sends=verifications.c.sends + 1,
                    last_sent_at=_utc(now),
                    updated_at=_utc(now),
                )
            )
        return bool(result.rowcount)

    async def check(
        self, verification_id: str, key: bytes, code: str, now: datetime
    ) -> Checked | None:
        """Count one attempt and compare; None when the verification is unknown."""
        async with self.store.transaction() as conn:
            row = (
                await conn.execute(
                    select(verifications).where(verifications.c.id == verification_id)
                )
            ).first()
            if row is None:
                return None
            current = _verification(row)
            if current.status is VerificationStatus.APPROVED:
                return Checked(CheckResult.APPROVED, 0, current.message_id, already_approved=True)
            if now >= current.expires_at:
                return Checked(CheckResult.EXPIRED, 0, current.message_id)
            counted = await _count_attempt(conn, verification_id)
            if counted is None:
                return Checked(CheckResult.TOO_MANY_ATTEMPTS, 0, current.message_id)
            attempts, max_attempts, stored, salt, message_id = counted
            left = max_attempts - attempts
            if not code_matches(key, salt, stored, code):
                return Checked(CheckResult.DENIED, left, message_id)
            await conn.execute(
                update(verifications)
                .where(verifications.c.id == verification_id)
                .values(status=VerificationStatus.APPROVED.value, updated_at=_utc(now))
            )
            await _insert_conversion(conn, message_id, "verification", now)
            return Checked(CheckResult.APPROVED, left, message_id)

    async def record_conversion(self, message_id: str, source: str, now: datetime) -> bool:
        """Note that the code of ``message_id`` was used; False when no such message exists."""
        async with self.store.transaction() as conn:
            known = await conn.scalar(select(messages.c.id).where(messages.c.id == message_id))
            if known is None:
                return False
            await _insert_conversion(conn, message_id, source, now)
        return True

    async def conversion_rates(
        self, since: datetime, *, by: str = "country", keep_digits: int | None = None
    ) -> dict[str, Conversion]:
        """OTPs sent since ``since`` and their conversions, per country or per prefix.

        ``by="prefix"`` groups by the number without its last ``keep_digits`` digits
        (the pumping guard's unit).
        """
        if by == "prefix":
            trim = keep_digits if keep_digits is not None else 4
            group: Any = func.substr(messages.c.to, 1, func.length(messages.c.to) - trim)
        else:
            group = messages.c.country
        query = (
            select(group, func.count(messages.c.id), func.count(conversions.c.message_id))
            .select_from(messages.outerjoin(conversions, conversions.c.message_id == messages.c.id))
            .where(messages.c.kind == "otp", messages.c.created_at >= _utc(since))
            .group_by(group)
        )
        async with self.store.reading() as conn:
            rows = (await conn.execute(query)).all()
        return {str(key): Conversion(int(sent), int(used)) for key, sent, used in rows}


async def _count_attempt(
    conn: AsyncConnection, verification_id: str
) -> tuple[int, int, bytes, bytes, str] | None:
    row = (
        await conn.execute(
            update(verifications)
            .where(
                verifications.c.id == verification_id,
                verifications.c.status == VerificationStatus.PENDING.value,
                verifications.c.attempts < verifications.c.max_attempts,
            )
            .values(attempts=verifications.c.attempts + 1)
            .returning(
                verifications.c.attempts,
                verifications.c.max_attempts,
                verifications.c.code_hash,
                verifications.c.salt,
                verifications.c.message_id,
            )
        )
    ).first()
    if row is None:
        return None
    return int(row[0]), int(row[1]), bytes(row[2]), bytes(row[3]), str(row[4])


async def _insert_conversion(
    conn: AsyncConnection, message_id: str, source: str, now: datetime
) -> None:
    # The first feedback wins; a repeat changes nothing.
    upsert = postgresql.insert if conn.dialect.name == "postgresql" else sqlite.insert
    await conn.execute(
        upsert(conversions)
        .values(message_id=message_id, source=source, converted_at=_utc(now))
        .on_conflict_do_nothing(index_elements=["message_id"])
    )


def _verification(row: Row[Any]) -> Verification:
    return Verification(
        id=row.id,
        to=row.to,
        country=row.country,
        status=VerificationStatus(row.status),
        attempts=row.attempts,
        max_attempts=row.max_attempts,
        sends=row.sends,
        message_id=row.message_id,
        created_at=_utc(row.created_at),
        expires_at=_utc(row.expires_at),
        last_sent_at=_utc(row.last_sent_at),
    )
