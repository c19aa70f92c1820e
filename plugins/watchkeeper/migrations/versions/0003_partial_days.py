"""Partial days: the completeness judgment of each day's partition.

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-01

Frozen history: do not edit after release; add a new revision instead. `wk_partition.partial`
holds watchkeeper.completeness.PartialDay.to_dict() (partial, rows, expected, basis, reason, ...)
or NULL for a day without rows to judge; rows written before this revision read as NULL.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | Sequence[str] | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # A nullable column: SQLite adds it without rebuilding the table, PostgreSQL without a rewrite.
    op.add_column("wk_partition", sa.Column("partial", sa.JSON(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("wk_partition") as batch:
        batch.drop_column("partial")
