"""messages, attempts, rejections

Revision ID: 0001
Revises:
Create Date: 2026-11-28
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

TS = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "messages",
        sa.Column("id", sa.String(64), primary_key=True),
        sa.Column("to", sa.String(20), nullable=False),
        sa.Column("country", sa.String(2), nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("sender", sa.String(32)),
        sa.Column("body", sa.Text),
        sa.Column("tags", sa.JSON, nullable=False),
        sa.Column("expires_at", TS),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("attempts", sa.Integer, nullable=False),
        sa.Column("provider", sa.String(64)),
        sa.Column("provider_message_id", sa.String(128)),
        sa.Column("segments", sa.Integer),
        sa.Column("error_code", sa.String(64)),
        sa.Column("error_message", sa.Text),
        sa.Column("possible_duplicate", sa.Boolean, nullable=False),
        sa.Column("created_at", TS, nullable=False),
        sa.Column("updated_at", TS, nullable=False),
    )
    op.create_index("ix_messages_updated_at", "messages", ["updated_at"])
    op.create_index("ix_messages_provider_message_id", "messages", ["provider_message_id"])
    op.create_table(
        "attempts",
        sa.Column("key", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column(
            "message_id",
            sa.String(64),
            sa.ForeignKey("messages.id", ondelete="CASCADE"),
            nullable=False,
        ),
        sa.Column("number", sa.Integer, nullable=False),
        sa.Column("provider", sa.String(64), nullable=False),
        sa.Column("outcome", sa.String(16), nullable=False),
        sa.Column("started_at", TS, nullable=False),
        sa.Column("finished_at", TS),
        sa.Column("provider_message_id", sa.String(128)),
        sa.Column("error_code", sa.String(64)),
        sa.Column("error_message", sa.Text),
    )
    op.create_index("ix_attempts_message_id", "attempts", ["message_id"])
    op.create_table(
        "rejections",
        sa.Column("key", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("message_id", sa.String(64)),
        sa.Column("reason", sa.Text, nullable=False),
        sa.Column("at", TS, nullable=False),
    )
    op.create_index("ix_rejections_at", "rejections", ["at"])


def downgrade() -> None:
    op.drop_table("rejections")
    op.drop_table("attempts")
    op.drop_table("messages")
