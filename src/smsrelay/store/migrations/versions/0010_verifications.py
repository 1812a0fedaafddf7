"""verifications (codes owned by smsrelay, as keyed hashes) and conversions (feedback)

Revision ID: 0010_verifications
Revises: 0009_trace_context
Create Date: 2026-12-01
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0010_verifications"
down_revision = "0009_trace_context"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "verifications",
        sa.Column("id", sa.String(64), primary_key=True),
        sa.Column("to", sa.String(20), nullable=False),
        sa.Column("country", sa.String(2), nullable=False),
        sa.Column("status", sa.String(24), nullable=False),
        sa.Column("code_hash", sa.LargeBinary(32), nullable=False),
        sa.Column("salt", sa.LargeBinary(16), nullable=False),
        sa.Column("attempts", sa.Integer, nullable=False),
        sa.Column("max_attempts", sa.Integer, nullable=False),
        sa.Column("sends", sa.Integer, nullable=False),
        sa.Column("message_id", sa.String(64), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("last_sent_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_index("ix_verifications_to_created_at", "verifications", ["to", "created_at"])
    op.create_table(
        "conversions",
        sa.Column("message_id", sa.String(64), primary_key=True),
        sa.Column("source", sa.String(16), nullable=False),
        sa.Column("converted_at", sa.DateTime(timezone=True), nullable=False),
    )


def downgrade() -> None:
    # Open verifications and conversion feedback are lost with their tables.
    op.drop_table("conversions")
    op.drop_index("ix_verifications_to_created_at", table_name="verifications")
    op.drop_table("verifications")
