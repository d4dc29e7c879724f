"""reservation lines remember the product's name they were taken with

As with the price (0002): a batch reservation reads each product's name under the same row lock
as its stock and answers it, so an order keeps the name its products had when it was placed
without a lookup of its own, and a retried reservation answers the same name even after a
rename. Lines written before this are NULL.

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-04
"""

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("reservations", sa.Column("name", sa.String(200), nullable=True))


def downgrade() -> None:
    op.drop_column("reservations", "name")
