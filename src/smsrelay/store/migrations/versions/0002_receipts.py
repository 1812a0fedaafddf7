"""receipts, receipt_refusals, receipt_digests

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-05
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

TS = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "receipts",
        sa.Column("key", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("message_id", sa.String(64), sa.ForeignKey("messages.id", ondelete="CASCADE")),
        sa.Column("provider", sa.String(64), nullable=False),
        sa.Column("provider_message_id", sa.String(128)),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("provider_status", sa.String(64), nullable=False),
        sa.Column("error_code", sa.String(64)),
        sa.Column("part", sa.Integer),
        sa.Column("parts", sa.Integer),
        sa.Column("at", TS),
        sa.Column("received_at", TS, nullable=False),
    )
    op.create_index("ix_receipts_message_id", "receipts", ["message_id"])
    op.create_index(
        "ix_receipts_provider_message_id", "receipts", ["provider", "provider_message_id"]
    )
    op.create_index("ix_receipts_received_at", "receipts", ["received_at"])
    op.create_table(
        "receipt_refusals",
        sa.Column("key", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("provider", sa.String(64), nullable=False),
        sa.Column("reason", sa.Text, nullable=False),
        sa.Column("at", TS, nullable=False),
    )
    op.create_index("ix_receipt_refusals_at", "receipt_refusals", ["at"])
    op.create_table(
        "receipt_digests",
        sa.Column("key", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("provider", sa.String(64), nullable=False),
        sa.Column("digest", sa.String(64), nullable=False),
        sa.Column("at", TS, nullable=False),
    )
    op.create_index("ux_receipt_digests", "receipt_digests", ["provider", "digest"], unique=True)
    op.create_index("ix_receipt_digests_at", "receipt_digests", ["at"])
    op.create_index(
        "ix_attempts_provider_message_id", "attempts", ["provider", "provider_message_id"]
    )


def downgrade() -> None:
    op.drop_index("ix_attempts_provider_message_id", table_name="attempts")
    op.drop_table("receipt_digests")
    op.drop_table("receipt_refusals")
    op.drop_table("receipts")
