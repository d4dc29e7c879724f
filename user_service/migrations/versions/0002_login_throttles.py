"""login throttles: one counter row per account (or privileged account and client address)

Replaces login_failures (a row per failure, checked and recorded in separate steps, so
parallel guesses got past the limit). The failures on record are dropped with it: any
lock-out in progress at the upgrade ends.

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-04
"""

import sqlalchemy as sa
from alembic import op

from common.db import UtcDateTime

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "login_throttles",
        sa.Column("throttle_key", sa.String(64), primary_key=True),
        sa.Column("attempts", sa.Integer, nullable=False),
        sa.Column("window_ends_at", UtcDateTime(), nullable=False),
    )
    op.create_index("ix_login_throttles_window_ends_at", "login_throttles", ["window_ends_at"])
    op.drop_table("login_failures")


def downgrade() -> None:
    op.create_table(
        "login_failures",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer, "sqlite"),
            primary_key=True,
            autoincrement=True,
        ),
        sa.Column("login_key", sa.String(254), nullable=False),
        sa.Column("failed_at", UtcDateTime(), nullable=False),
    )
    op.create_index("ix_login_failures_key_time", "login_failures", ["login_key", "failed_at"])
    op.drop_table("login_throttles")
