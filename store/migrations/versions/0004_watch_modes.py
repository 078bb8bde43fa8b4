"""Watch-list entries that exclude an experiment as well as ones that include it.

Revision ID: 0004
Revises: 0003
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("watch_list") as batch:
        batch.add_column(sa.Column("mode", sa.String(10), nullable=False, server_default="watch"))


def downgrade() -> None:
    with op.batch_alter_table("watch_list") as batch:
        batch.drop_column("mode")
