"""prices: per-provider price tables with history

Revision ID: 0004_prices
Revises: 0003_encoding
Create Date: 2026-12-01
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004_prices"
down_revision = "0003_encoding"
branch_labels = None
depends_on = None

TS = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "prices",
        sa.Column("key", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("provider", sa.String(64), nullable=False),
        sa.Column("destination", sa.String(16), nullable=False),
        sa.Column("price", sa.String(24), nullable=False),
        sa.Column("currency", sa.String(3), nullable=False),
        sa.Column("effective_from", TS, nullable=False),
        sa.Column("source", sa.String(16), nullable=False),
        sa.Column("imported_at", TS, nullable=False),
    )
    op.create_index(
        "ux_prices", "prices", ["provider", "destination", "effective_from"], unique=True
    )


def downgrade() -> None:
    op.drop_index("ux_prices", table_name="prices")
    op.drop_table("prices")
