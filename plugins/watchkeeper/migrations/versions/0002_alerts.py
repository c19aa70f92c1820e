"""Alerts outbox: one row per distinct Slack message, written with the finding that caused it.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-30

Frozen history: do not edit after release; add a new revision instead. Silences are not a table:
they are wk_event rows of kind 'silence' (an audited happening with a reason and an expiry).
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | Sequence[str] | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _ts(name: str, nullable: bool = True) -> sa.Column:
    return sa.Column(name, sa.DateTime(timezone=True), nullable=nullable)


def upgrade() -> None:
    op.create_table(
        "wk_outbox",
        *[sa.Column(name, sa.Text(), nullable=False)
          for name in ("dedupe_key", "model", "ds", "kind", "subject", "thread_key", "severity")],
        sa.Column("channel", sa.Text()),
        sa.Column("text", sa.Text(), nullable=False),
        sa.Column("blocks", sa.JSON(), nullable=False),
        sa.Column("facts", sa.JSON(), nullable=False),
        sa.Column("closes_thread", sa.Boolean(), nullable=False, server_default=sa.false()),
        sa.Column("status", sa.Text(), nullable=False),
        sa.Column("note", sa.Text()),
        sa.Column("attempts", sa.Integer(), nullable=False, server_default="0"),
        sa.Column("last_error", sa.Text()),
        sa.Column("delivered_via", sa.Text()),
        sa.Column("slack_channel", sa.Text()),
        sa.Column("slack_ts", sa.Text()),
        sa.Column("digest_key", sa.Text()),
        _ts("created_at", nullable=False),
        _ts("updated_at", nullable=False),
        _ts("claimed_at"),
        _ts("sent_at"),
        # The dedupe key is the identity (no surrogate id: nothing else refers to a row).
        sa.PrimaryKeyConstraint("dedupe_key", name="pk_wk_outbox"),
        sa.UniqueConstraint("model", "kind", "subject", "ds", name="uq_wk_outbox_key"),
    )
    # Delivery reads a model's pending rows; threading reads one incident's rows.
    op.create_index("ix_wk_outbox_model_status", "wk_outbox", ["model", "status"])
    op.create_index("ix_wk_outbox_model_thread", "wk_outbox", ["model", "thread_key"])


def downgrade() -> None:
    op.drop_index("ix_wk_outbox_model_thread", table_name="wk_outbox")
    op.drop_index("ix_wk_outbox_model_status", table_name="wk_outbox")
    op.drop_table("wk_outbox")
