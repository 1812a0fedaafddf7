"""messages.trace_context: the W3C traceparent of the send, for receipts to link to

Revision ID: 0009_trace_context
Revises: 0008_costs
Create Date: 2026-12-01

A delivery receipt arrives minutes after the send, at the API, in another process: its
span links to the send's span through this value (``smsrelay.telemetry``). NULL when
tracing was off, and in rows written before: such receipts are simply not linked.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0009_trace_context"
down_revision = "0008_costs"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("messages", sa.Column("trace_context", sa.String(64)))


def downgrade() -> None:
    # Plain ALTER TABLE … DROP COLUMN (SQLite 3.35+): a batch copy of `messages` would
    # fire the ON DELETE CASCADE of attempts and receipts.
    op.drop_column("messages", "trace_context")
