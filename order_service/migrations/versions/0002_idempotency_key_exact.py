"""idempotency keys compare byte for byte

MySQL's default collation is case-insensitive, so "Key-A" and "key-a" collided in
uq_order_attempts_user_key and one answered for the other. SQLite already compares exactly.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-27
"""

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def _on_mysql() -> bool:
    return op.get_bind().dialect.name in {"mysql", "mariadb"}


def upgrade() -> None:
    if _on_mysql():
        # Keys are printable ASCII (the API refuses anything else), so ascii_bin holds them all.
        op.alter_column(
            "order_attempts",
            "idempotency_key",
            existing_type=sa.String(255),
            type_=sa.String(255, collation="ascii_bin"),
            existing_nullable=True,
        )


def downgrade() -> None:
    if _on_mysql():
        op.alter_column(
            "order_attempts",
            "idempotency_key",
            existing_type=sa.String(255, collation="ascii_bin"),
            type_=sa.String(255),
            existing_nullable=True,
        )
