"""Tables of the store (SQLAlchemy Core); Alembic migrations create them."""

from __future__ import annotations

from sqlalchemy import (
    JSON,
    Boolean,
    Column,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    true,
)

metadata = MetaData()

messages = Table(
    "messages",
    metadata,
    Column("id", String(64), primary_key=True),
    Column("to", String(20), nullable=False),
    Column("country", String(2), nullable=False),
    Column("kind", String(16), nullable=False),
    Column("sender", String(32)),
    # NULL for OTP messages: the store never holds a one-time code.
    Column("body", Text),
    Column("tags", JSON, nullable=False),
    Column("expires_at", DateTime(timezone=True)),
    Column("state", String(16), nullable=False),
    Column("attempts", Integer, nullable=False, default=0),
    Column("provider", String(64)),
    Column("provider_message_id", String(128)),
    Column("segments", Integer),
    Column("error_code", String(64)),
    Column("error_message", Text),
    Column("possible_duplicate", Boolean, nullable=False, default=False),
    # Times `smsrelay resend` sent a failed message again (migration 0003).
    Column("resends", Integer, nullable=False, default=0, server_default="0"),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("updated_at", DateTime(timezone=True), nullable=False),
    # The body as written: gsm7/ucs2 and its parts (migration 0003_encoding).
    Column("original_encoding", String(8)),
    Column("original_parts", Integer),
    # (migration 0005_request_digest) SendRequest.digest of the request the id was first taken for;
    # NULL in rows written before it: unknown, taken to be the same request.
    Column("request_digest", String(64)),
    # False while the API accepted the message and no worker has taken it yet.
    Column("claimed", Boolean, nullable=False, server_default=true()),
    Index("ix_messages_updated_at", "updated_at"),
    Index("ix_messages_provider_message_id", "provider_message_id"),
)

attempts = Table(
    "attempts",
    metadata,
    Column("key", Integer, primary_key=True, autoincrement=True),
    Column("message_id", String(64), ForeignKey("messages.id", ondelete="CASCADE"), nullable=False),
    Column("number", Integer, nullable=False),
    Column("provider", String(64), nullable=False),
    Column("outcome", String(16), nullable=False),
    Column("started_at", DateTime(timezone=True), nullable=False),
    Column("finished_at", DateTime(timezone=True)),
    Column("provider_message_id", String(128)),
    Column("error_code", String(64)),
    Column("error_message", Text),
    # The body as sent to this provider, after smart encoding (migration 0003_encoding).
    Column("sent_encoding", String(8)),
    Column("sent_parts", Integer),
    Index("ix_attempts_message_id", "message_id"),
)

rejections = Table(
    "rejections",
    metadata,
    Column("key", Integer, primary_key=True, autoincrement=True),
    Column("message_id", String(64)),
    Column("reason", Text, nullable=False),
    Column("at", DateTime(timezone=True), nullable=False),
    Index("ix_rejections_at", "at"),
)

# -- delivery receipts (migration 0002) -----------------------------------------------------

receipts = Table(
    "receipts",
    metadata,
    Column("key", Integer, primary_key=True, autoincrement=True),
    # NULL until the message is known: a receipt can overtake the worker's record of the send.
    Column("message_id", String(64), ForeignKey("messages.id", ondelete="CASCADE")),
    Column("provider", String(64), nullable=False),
    Column("provider_message_id", String(128)),
    Column("status", String(16), nullable=False),
    Column("provider_status", String(64), nullable=False),
    Column("error_code", String(64)),
    Column("part", Integer),
    Column("parts", Integer),
    Column("at", DateTime(timezone=True)),
    Column("received_at", DateTime(timezone=True), nullable=False),
    Index("ix_receipts_message_id", "message_id"),
    Index("ix_receipts_provider_message_id", "provider", "provider_message_id"),
    Index("ix_receipts_received_at", "received_at"),
)

receipt_refusals = Table(
    "receipt_refusals",
    metadata,
    Column("key", Integer, primary_key=True, autoincrement=True),
    Column("provider", String(64), nullable=False),
    Column("reason", Text, nullable=False),
    Column("at", DateTime(timezone=True), nullable=False),
    Index("ix_receipt_refusals_at", "at"),
)

# One row per accepted webhook: the unique index is what refuses a replay.
receipt_digests = Table(
    "receipt_digests",
    metadata,
    Column("key", Integer, primary_key=True, autoincrement=True),
    Column("provider", String(64), nullable=False),
    Column("digest", String(64), nullable=False),
    Column("at", DateTime(timezone=True), nullable=False),
    Index("ux_receipt_digests", "provider", "digest", unique=True),
    Index("ix_receipt_digests_at", "at"),
)

# Receipts are also matched through the attempt that carried the provider's id.
Index("ix_attempts_provider_message_id", attempts.c.provider, attempts.c.provider_message_id)

# -- price tables (migration 0004_prices) ---------------------------------------------------

# Every price a provider ever had: a newer price is a new row with a later effective_from.
prices = Table(
    "prices",
    metadata,
    Column("key", Integer, primary_key=True, autoincrement=True),
    Column("provider", String(64), nullable=False),
    # An ISO 3166 country ("GB") or an E.164 prefix ("+4420").
    Column("destination", String(16), nullable=False),
    # Decimal text, exact on every backend (SQLite has no decimal type).
    Column("price", String(24), nullable=False),
    Column("currency", String(3), nullable=False),
    Column("effective_from", DateTime(timezone=True), nullable=False),
    Column("source", String(16), nullable=False),
    Column("imported_at", DateTime(timezone=True), nullable=False),
    Index("ux_prices", "provider", "destination", "effective_from", unique=True),
)

# -- the event outbox (migration 0006_receipts_outbox) ------------------------------------

# Status events written in the transaction that decided them, deleted once published:
# a crash between the commit and the publish leaves the event here for the next drain.
event_outbox = Table(
    "event_outbox",
    metadata,
    Column("key", Integer, primary_key=True, autoincrement=True),
    Column("event", Text, nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Index("ix_event_outbox_created_at", "created_at"),
)
