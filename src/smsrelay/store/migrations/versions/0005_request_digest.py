"""messages.request_digest and messages.claimed

Revision ID: 0005_request_digest
Revises: 0004_prices
Create Date: 2026-12-01

``request_digest``: what defined the request (``SendRequest.digest``), so the same id
with another request is refused instead of dropped as a duplicate. Rows written
before have none: unknown, and treated as the same request (a duplicate, as before).

``claimed``: False while the API has accepted a message that no worker has taken
yet; every row written before was a worker's claim, hence the server default.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005_request_digest"
down_revision = "0004_prices"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("messages", sa.Column("request_digest", sa.String(64)))
    op.add_column(
        "messages", sa.Column("claimed", sa.Boolean, nullable=False, server_default=sa.true())
    )


def downgrade() -> None:
    # Plain ALTER TABLE … DROP COLUMN (SQLite 3.35+): a batch copy of `messages` would
    # fire the ON DELETE CASCADE of attempts and receipts.
    op.drop_column("messages", "claimed")
    op.drop_column("messages", "request_digest")
