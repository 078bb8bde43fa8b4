"""The alert outbox: one row per event and target, from routing to confirmed delivery.

Replaces `deliveries`, which no released version wrote to.

Revision ID: 0005
Revises: 0004
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from store.schema import Key, UTCDateTime

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.drop_table("deliveries")
    op.create_table(
        "alert_outbox",
        sa.Column("id", Key, primary_key=True, autoincrement=True),
        sa.Column("event_id", Key, nullable=False),
        sa.Column("target", sa.String(200), nullable=False),
        sa.Column("experiment_id", sa.String(200)),
        sa.Column("level", sa.String(20), nullable=False),
        sa.Column("status", sa.String(20), nullable=False),
        sa.Column("batched", sa.Boolean, nullable=False),
        sa.Column("attempts", sa.Integer, nullable=False),
        sa.Column("reason", sa.String(1000)),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("due_at", UTCDateTime(), nullable=False),
        sa.Column("last_attempt_at", UTCDateTime()),
        sa.Column("delivered_at", UTCDateTime()),
        sa.UniqueConstraint("event_id", "target"),
    )
    op.create_index("ix_alert_outbox_due", "alert_outbox", ["target", "status", "due_at"])
    op.create_index("ix_alert_outbox_created", "alert_outbox", ["target", "created_at"])


def downgrade() -> None:
    op.drop_table("alert_outbox")
    op.create_table(
        "deliveries",
        sa.Column("event_id", Key, primary_key=True),
        sa.Column("target", sa.String(200), primary_key=True),
        sa.Column("status", sa.String(20), nullable=False),
        sa.Column("attempts", sa.Integer, nullable=False),
        sa.Column("last_error", sa.String(1000)),
        sa.Column("updated_at", UTCDateTime(), nullable=False),
    )
