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
    with op.batch_alter_table("messages") as batch:
        batch.add_column(sa.Column("resends", sa.Integer, nullable=False, server_default="0"))


def downgrade() -> None:
    with op.batch_alter_table("messages") as batch:
        batch.drop_column("resends")
