"""History queries and run-time state: events point at their snapshot, indexes for "when did
it become significant" and "what did we know at T", tables for source (breaker) state, the
watch list and alert deliveries.

Revision ID: 0002
Revises: 0001
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from store.schema import Json, Key, UTCDateTime

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("events") as batch:
        batch.add_column(sa.Column("snapshot_id", Key, nullable=True))
    op.create_index("ix_events_kind", "events", ["experiment_id", "kind", "metric_id", "id"])
    op.create_index("ix_events_snapshot", "events", ["snapshot_id"])
    op.create_index("ix_snapshots_fetched", "snapshots", ["experiment_pk", "fetched_at"])
    op.create_index("ix_experiments_checked", "experiments", ["last_checked_at"])
    op.create_table(
        "sources",
        sa.Column("name", sa.String(200), primary_key=True),
        sa.Column("state", Json, nullable=False),
        sa.Column("updated_at", UTCDateTime(), nullable=False),
    )
    op.create_table(
        "watch_list",
        sa.Column("source", sa.String(200), primary_key=True),
        sa.Column("experiment_id", sa.String(200), primary_key=True),
        sa.Column("added_at", UTCDateTime(), nullable=False),
    )
    op.create_table(
        "deliveries",
        sa.Column("event_id", Key, primary_key=True),
        sa.Column("target", sa.String(200), primary_key=True),
        sa.Column("status", sa.String(20), nullable=False),
        sa.Column("attempts", sa.Integer, nullable=False),
        sa.Column("last_error", sa.String(1000)),
        sa.Column("updated_at", UTCDateTime(), nullable=False),
    )


def downgrade() -> None:
    for table in ("deliveries", "watch_list", "sources"):
        op.drop_table(table)
    op.drop_index("ix_experiments_checked", "experiments")
    op.drop_index("ix_snapshots_fetched", "snapshots")
    op.drop_index("ix_events_snapshot", "events")
    op.drop_index("ix_events_kind", "events")
    with op.batch_alter_table("events") as batch:
        batch.drop_column("snapshot_id")
