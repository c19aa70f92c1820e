"""Initial schema: partitions, stage and expectation results, SLIs, metrics, events, runs.

Revision ID: 0001
Revises:
Create Date: 2026-11-29

Frozen history: do not edit after release; add a new revision instead. Timestamps are
TIMESTAMP WITH TIME ZONE (stored as UTC); ds is TEXT 'YYYY-MM-DD'.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0001"
down_revision: str | Sequence[str] | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _keys(*names: str) -> list[sa.Column]:
    return [sa.Column(name, sa.Text(), nullable=False) for name in names]


def _ts(name: str, nullable: bool = True) -> sa.Column:
    return sa.Column(name, sa.DateTime(timezone=True), nullable=nullable)


def upgrade() -> None:
    op.create_table(
        "wk_partition",
        *_keys("model", "ds"),
        sa.Column("source", sa.Text(), nullable=False),
        sa.Column("rows", sa.BigInteger()),
        _ts("landed_at"),
        _ts("deadline"),
        sa.Column("lateness_hours", sa.Float()),
        sa.Column("status", sa.Text(), nullable=False),
        sa.Column("message", sa.Text(), nullable=False),
        _ts("updated_at", nullable=False),
        sa.PrimaryKeyConstraint("model", "ds", name="pk_wk_partition"),
    )
    op.create_table(
        "wk_stage_result",
        *_keys("model", "ds", "stage"),
        sa.Column("success", sa.Boolean(), nullable=False),
        sa.Column("evaluated", sa.Integer(), nullable=False),
        sa.Column("passed", sa.Integer(), nullable=False),
        sa.Column("row_count", sa.BigInteger()),
        sa.Column("error", sa.Text()),
        sa.Column("report_path", sa.Text()),
        _ts("updated_at", nullable=False),
        sa.PrimaryKeyConstraint("model", "ds", "stage", name="pk_wk_stage_result"),
    )
    op.create_table(
        "wk_expectation_result",
        *_keys("model", "ds", "stage", "expectation_id"),
        sa.Column("expectation_type", sa.Text(), nullable=False),
        sa.Column("column", sa.Text()),
        sa.Column("success", sa.Boolean(), nullable=False),
        sa.Column("observed", sa.JSON()),
        sa.Column("unexpected_count", sa.BigInteger()),
        sa.Column("unexpected_share", sa.Float()),
        sa.Column("element_count", sa.BigInteger()),
        sa.Column("details", sa.JSON(), nullable=False),
        _ts("updated_at", nullable=False),
        sa.PrimaryKeyConstraint(
            "model", "ds", "stage", "expectation_id", name="pk_wk_expectation_result"
        ),
    )
    op.create_table(
        "wk_sli_value",
        *_keys("model", "ds", "sli", "known_on"),
        sa.Column("value", sa.Float()),
        sa.Column("good", sa.Boolean()),
        sa.Column("good_events", sa.Float()),
        sa.Column("total_events", sa.Float()),
        sa.Column("provisional", sa.Boolean(), nullable=False, server_default=sa.false()),
        sa.Column("details", sa.JSON(), nullable=False),
        _ts("updated_at", nullable=False),
        sa.PrimaryKeyConstraint("model", "ds", "sli", "known_on", name="pk_wk_sli_value"),
    )
    op.create_table(
        "wk_metric",
        *_keys("model", "ds", "family", "subject", "known_on"),
        sa.Column("value", sa.Float()),
        sa.Column("payload", sa.JSON(), nullable=False),
        _ts("updated_at", nullable=False),
        sa.PrimaryKeyConstraint(
            "model", "ds", "family", "subject", "known_on", name="pk_wk_metric"
        ),
    )
    op.create_index(
        "ix_wk_metric_model_family_ds", "wk_metric", ["model", "family", "ds", "known_on"]
    )
    op.create_table(
        "wk_event",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        *_keys("model", "ds", "kind", "subject"),
        sa.Column("payload", sa.JSON(), nullable=False),
        _ts("created_at", nullable=False),
        sa.Column("created_by", sa.Text()),
        sa.UniqueConstraint("model", "kind", "subject", "ds", name="uq_wk_event_key"),
    )
    op.create_table(
        "wk_run",
        *_keys("model", "ds", "dag_id", "task_id"),
        sa.Column("state", sa.Text(), nullable=False),
        sa.Column("try_number", sa.Integer(), nullable=False),
        _ts("started_at"),
        sa.Column("duration_seconds", sa.Float()),
        sa.Column("error", sa.Text()),
        _ts("updated_at", nullable=False),
        sa.PrimaryKeyConstraint("model", "ds", "dag_id", "task_id", name="pk_wk_run"),
    )


def downgrade() -> None:
    for table in ("wk_run", "wk_event", "wk_metric", "wk_sli_value", "wk_expectation_result",
                  "wk_stage_result", "wk_partition"):
        op.drop_table(table)
