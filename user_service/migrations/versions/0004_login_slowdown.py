"""login slow-down: when a throttle's next attempt may come, and which attempt was let in

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-04
"""

import sqlalchemy as sa
from alembic import op

from common.db import UtcDateTime

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("login_throttles") as throttles:
        # NULL: no pause (every row before this revision, and a window's first failures).
        throttles.add_column(sa.Column("next_attempt_at", UtcDateTime(), nullable=True))
        throttles.add_column(sa.Column("last_attempt_id", sa.String(32), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("login_throttles") as throttles:
        throttles.drop_column("last_attempt_id")
        throttles.drop_column("next_attempt_at")
