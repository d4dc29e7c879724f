"""phone numbers, closed accounts and the address book

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-04
"""

import sqlalchemy as sa
from alembic import op

from common.db import UtcDateTime

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

# Erased (NULL) when an account is closed; NULLs never collide in the unique indexes.
_ERASABLE = [
    ("username", sa.String(50)),
    ("username_key", sa.String(50)),
    ("email", sa.String(254)),
    ("email_key", sa.String(254)),
    ("password_hash", sa.String(255)),
]


def upgrade() -> None:
    with op.batch_alter_table("users") as users:
        for name, type_ in _ERASABLE:
            users.alter_column(name, existing_type=type_, nullable=True)
        users.add_column(sa.Column("phone", sa.String(16), nullable=True))
        users.add_column(sa.Column("closed_at", UtcDateTime(), nullable=True))
    op.create_table(
        "addresses",
        sa.Column("id", sa.String(36), primary_key=True),
        sa.Column("user_id", sa.String(36), nullable=False),
        sa.Column("label", sa.String(50), nullable=True),
        sa.Column("recipient", sa.String(100), nullable=False),
        sa.Column("line1", sa.String(200), nullable=False),
        sa.Column("line2", sa.String(200), nullable=True),
        sa.Column("city", sa.String(100), nullable=False),
        sa.Column("region", sa.String(100), nullable=True),
        sa.Column("postal_code", sa.String(20), nullable=False),
        sa.Column("country", sa.String(2), nullable=False),
        sa.Column("phone", sa.String(16), nullable=True),
        sa.Column("created_at", UtcDateTime(), nullable=False),
        sa.Column("updated_at", UtcDateTime(), nullable=False),
        sa.ForeignKeyConstraint(["user_id"], ["users.id"], name="fk_addresses_user_id"),
        # Also serves the foreign key (MySQL drops the index it made for it on its own).
        sa.Index("ix_addresses_user_id_id", "user_id", "id"),
    )


def downgrade() -> None:
    op.drop_table("addresses")
    # The older schema cannot hold a closed account (no name, no email): those rows go, their
    # personal data being gone already.
    op.execute(sa.text("DELETE FROM users WHERE closed_at IS NOT NULL"))
    with op.batch_alter_table("users") as users:
        users.drop_column("closed_at")
        users.drop_column("phone")
        for name, type_ in _ERASABLE:
            users.alter_column(name, existing_type=type_, nullable=False)
