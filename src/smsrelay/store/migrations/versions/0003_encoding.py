"""encoding and parts of a body: as written (messages), as sent (attempts)

Revision ID: 0003_encoding
Revises: 0002
Create Date: 2026-12-01
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003_encoding"
down_revision = "0002"
branch_labels = None
depends_on = None

COLUMNS = {
    "messages": (("original_encoding", sa.String(8)), ("original_parts", sa.Integer)),
    "attempts": (("sent_encoding", sa.String(8)), ("sent_parts", sa.Integer)),
}


def upgrade() -> None:
    # Nullable: rows written before this revision have no encoding recorded.
    for table, columns in COLUMNS.items():
        for name, type_ in columns:
            op.add_column(table, sa.Column(name, type_))


def downgrade() -> None:
    # Plain ALTER TABLE ... DROP COLUMN (SQLite >= 3.35), not batch mode: batch would
    # recreate `messages`, and dropping it under foreign_keys=ON cascades to attempts.
    for table, columns in COLUMNS.items():
        for name, _ in columns:
            op.drop_column(table, name)
