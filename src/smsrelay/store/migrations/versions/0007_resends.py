"""messages.resends: how often a failed message was resent (`smsrelay resend`)

Revision ID: 0007_resends
Revises: 0006_receipts_outbox
Create Date: 2026-12-01
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0007_resends"
down_revision = "0006_receipts_outbox"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # A server default, so rows written before (and by the previous version) read as 0.
    op.add_column("messages", sa.Column("resends", sa.Integer, nullable=False, server_default="0"))


def downgrade() -> None:
    # Plain ALTER TABLE … DROP COLUMN (SQLite 3.35+): a batch copy of `messages` would
    # fire the ON DELETE CASCADE of attempts and receipts, deleting them.
    op.drop_column("messages", "resends")
