"""reservation lines remember the price they were taken at

A batch reservation reads each product's price under the same row lock as its stock, and
answers it, so the order service needs no separate price lookup and its order's prices are
exactly those of the moment the stock was held. Lines written before this are NULL.

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


def upgrade() -> None:
    op.add_column("reservations", sa.Column("price", sa.Numeric(12, 2), nullable=True))


def downgrade() -> None:
    op.drop_column("reservations", "price")
