"""attempts: estimated and actual cost

Revision ID: 0008_costs
Revises: 0007_resends
Create Date: 2026-12-01

``estimated_cost``/``currency``: parts x price of the provider's table when the attempt
was planned; ``actual_cost``/``actual_currency``: what the provider's answer said it
charged. Decimal text (as ``prices.price``). Nullable: rows written before have none.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0008_costs"
down_revision = "0007_resends"
branch_labels = None
depends_on = None

COLUMNS = (
    ("estimated_cost", sa.String(24)),
    ("currency", sa.String(3)),
    ("actual_cost", sa.String(24)),
    ("actual_currency", sa.String(3)),
)


def upgrade() -> None:
    for name, type_ in COLUMNS:
        op.add_column("attempts", sa.Column(name, type_))


def downgrade() -> None:
    # Plain ALTER TABLE … DROP COLUMN (SQLite 3.35+), not a batch copy of the table.
    for name, _ in reversed(COLUMNS):
        op.drop_column("attempts", name)
