"""products and reservations

Revision ID: 0001
Revises:
Create Date: 2026-11-25
"""

import sqlalchemy as sa
from alembic import op

from common.db import UtcDateTime

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "products",
        sa.Column("id", sa.String(36), primary_key=True),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("description", sa.Text(), nullable=False),
        sa.Column("price", sa.Numeric(12, 2), nullable=False),
        sa.Column("stock", sa.Integer(), nullable=False),
        sa.Column("archived_at", UtcDateTime(), nullable=True),
        sa.Column("created_at", UtcDateTime(), nullable=False),
        sa.Column("updated_at", UtcDateTime(), nullable=False),
        sa.CheckConstraint("stock >= 0", name="ck_products_stock_not_negative"),
        sa.CheckConstraint("price >= 0", name="ck_products_price_not_negative"),
    )
    op.create_index("ix_products_price", "products", ["price"])
    if op.get_bind().dialect.name == "mysql":
        # Built without the stopword list, so searching "the" or "for" finds what it says;
        # the session setting is read when the index is created and then kept by the index.
        op.execute("SET SESSION innodb_ft_enable_stopword = OFF")
        op.execute("CREATE FULLTEXT INDEX ft_products_text ON products (name, description)")
        op.execute("SET SESSION innodb_ft_enable_stopword = ON")
    op.create_table(
        "reservations",
        sa.Column("reservation_id", sa.String(64), primary_key=True),
        sa.Column("product_id", sa.String(36), primary_key=True),
        sa.Column("quantity", sa.Integer(), nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("created_at", UtcDateTime(), nullable=False),
        sa.Column("updated_at", UtcDateTime(), nullable=False),
    )
    op.create_index("ix_reservations_product", "reservations", ["product_id"])


def downgrade() -> None:
    op.drop_table("reservations")
    op.drop_table("products")
