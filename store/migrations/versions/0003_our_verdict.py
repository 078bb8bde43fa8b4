"""expwatch's own verdict beside the platform's in the metric rows (for trajectories).

Revision ID: 0003
Revises: 0002
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

COLUMNS = ("our_verdict", "our_p_value", "absolute_change", "absolute_ci_low", "absolute_ci_high")


def upgrade() -> None:
    with op.batch_alter_table("metric_results") as batch:
        batch.add_column(sa.Column("our_verdict", sa.String(20)))
        for name in COLUMNS[1:]:
            batch.add_column(sa.Column(name, sa.Float))


def downgrade() -> None:
    with op.batch_alter_table("metric_results") as batch:
        for name in reversed(COLUMNS):
            batch.drop_column(name)
