"""The first schema (expwatch 0.1): experiments, snapshots, metric rows, events, cursors.

Revision ID: 0001
Revises:
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from store.schema import Json, Key, UTCDateTime

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "experiments",
        sa.Column("id", Key, primary_key=True, autoincrement=True),
        sa.Column("source", sa.String(200), nullable=False),
        sa.Column("experiment_id", sa.String(200), nullable=False),
        sa.Column("name", sa.String(500), nullable=False),
        sa.Column("status", sa.String(50), nullable=False),
        sa.Column("record", Json, nullable=False),
        sa.Column("upstream_updated_at", UTCDateTime()),
        sa.Column("first_seen_at", UTCDateTime(), nullable=False),
        sa.Column("last_checked_at", UTCDateTime()),
        sa.Column("latest_snapshot_id", Key),
        sa.UniqueConstraint("source", "experiment_id"),
    )
    op.create_table(
        "snapshots",
        sa.Column("id", Key, primary_key=True, autoincrement=True),
        sa.Column("experiment_pk", Key, sa.ForeignKey("experiments.id"), nullable=False),
        sa.Column("content_hash", sa.String(64), nullable=False),
        sa.Column("fetched_at", UTCDateTime(), nullable=False),
        sa.Column("upstream_updated_at", UTCDateTime()),
        sa.Column("phase", sa.String(50), nullable=False),
        sa.Column("record", Json, nullable=False),
    )
    op.create_index("ix_snapshots_experiment", "snapshots", ["experiment_pk", "id"])
    op.create_table(
        "metric_results",
        sa.Column("id", Key, primary_key=True, autoincrement=True),
        sa.Column("snapshot_id", Key, sa.ForeignKey("snapshots.id"), nullable=False),
        sa.Column("experiment_pk", Key, sa.ForeignKey("experiments.id"), nullable=False),
        sa.Column("metric_id", sa.String(200), nullable=False),
        sa.Column("variation_id", sa.String(200), nullable=False),
        sa.Column("fetched_at", UTCDateTime(), nullable=False),
        sa.Column("upstream_updated_at", UTCDateTime()),
        sa.Column("users", sa.Float, nullable=False),
        sa.Column("mean", sa.Float),
        sa.Column("relative_change", sa.Float),
        sa.Column("ci_low", sa.Float),
        sa.Column("ci_high", sa.Float),
        sa.Column("p_value", sa.Float),
        sa.Column("chance_to_win", sa.Float),
        sa.Column("platform_verdict", sa.String(20), nullable=False),
    )
    op.create_index(
        "ix_metric_results_series",
        "metric_results",
        ["experiment_pk", "metric_id", "variation_id", "snapshot_id"],
    )
    op.create_table(
        "events",
        sa.Column("id", Key, primary_key=True, autoincrement=True),
        sa.Column("kind", sa.String(50), nullable=False),
        sa.Column("source", sa.String(200), nullable=False),
        sa.Column("experiment_id", sa.String(200)),
        sa.Column("metric_id", sa.String(200)),
        sa.Column("variation_id", sa.String(200)),
        sa.Column("before", Json),
        sa.Column("after", Json),
        sa.Column("details", Json, nullable=False),
        sa.Column("occurred_at", UTCDateTime(), nullable=False),
        sa.Column("recorded_at", UTCDateTime(), nullable=False),
    )
    op.create_index("ix_events_experiment", "events", ["experiment_id", "id"])
    op.create_table(
        "cursors",
        sa.Column("consumer", sa.String(200), primary_key=True),
        sa.Column("position", Key, nullable=False),
        sa.Column("updated_at", UTCDateTime(), nullable=False),
    )


def downgrade() -> None:
    for table in ("cursors", "events", "metric_results", "snapshots", "experiments"):
        op.drop_table(table)
