"""History backfill: snapshots, metric rows and events marked as backfilled, and the days a
backfill has finished.

Revision ID: 0006
Revises: 0005
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from store.schema import UTCDateTime

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None

_FLAGGED = ("snapshots", "metric_results", "events")


def upgrade() -> None:
    # A plain ADD COLUMN (a constant default): SQLite does it in place, where batch mode
    # would copy every table, metric rows included.
    for table in _FLAGGED:
        op.add_column(
            table, sa.Column("backfilled", sa.Boolean, nullable=False, server_default=sa.false())
        )
    op.create_table(
        "backfill_days",
        sa.Column("source", sa.String(200), primary_key=True),
        sa.Column("experiment_id", sa.String(200), primary_key=True),
        sa.Column("day", sa.Date, primary_key=True),
        sa.Column("snapshots", sa.Integer, nullable=False),
        sa.Column("completed_at", UTCDateTime(), nullable=False),
    )


def downgrade() -> None:
    # The older schema cannot tell history from live results: backfilled rows go.
    for table in ("metric_results", "events", "snapshots"):
        op.execute(sa.text(f"DELETE FROM {table} WHERE backfilled"))
    op.drop_table("backfill_days")
    for table in _FLAGGED:
        with op.batch_alter_table(table) as batch:
            batch.drop_column("backfilled")
