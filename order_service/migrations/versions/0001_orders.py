"""orders, order items, the attempt journal and the outbox

Revision ID: 0001
Revises:
Create Date: 2026-11-27
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
        "orders",
        sa.Column("id", sa.String(36), primary_key=True),
        sa.Column("user_id", sa.String(36), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("total_amount", sa.Numeric(12, 2), nullable=False),
        sa.Column("reservation_id", sa.String(36), nullable=False),
        sa.Column("created_at", UtcDateTime(), nullable=False),
        sa.Column("updated_at", UtcDateTime(), nullable=False),
        sa.CheckConstraint(
            "status IN ('PENDING', 'PAID', 'CANCELLED')", name="ck_orders_status_known"
        ),
    )
    # Keyset pages per customer and per status, in creation order.
    op.create_index("ix_orders_user_id", "orders", ["user_id", "id"])
    op.create_index("ix_orders_status_id", "orders", ["status", "id"])
    op.create_table(
        "order_items",
        sa.Column(
            "order_id",
            sa.String(36),
            sa.ForeignKey("orders.id", name="fk_order_items_order"),
            primary_key=True,
        ),
        sa.Column("product_id", sa.String(36), primary_key=True),
        sa.Column("quantity", sa.Integer(), nullable=False),
        sa.Column("price", sa.Numeric(12, 2), nullable=False),
        sa.CheckConstraint("quantity > 0", name="ck_order_items_quantity_positive"),
    )
    op.create_table(
        "order_attempts",
        sa.Column("id", sa.String(36), primary_key=True),
        sa.Column("user_id", sa.String(36), nullable=False),
        sa.Column("idempotency_key", sa.String(255), nullable=True),
        sa.Column("request_hash", sa.String(64), nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("order_id", sa.String(36), nullable=True),
        sa.Column("created_at", UtcDateTime(), nullable=False),
        sa.Column("updated_at", UtcDateTime(), nullable=False),
        # NULL keys never collide, so requests without a key are always new orders.
        sa.UniqueConstraint("user_id", "idempotency_key", name="uq_order_attempts_user_key"),
    )
    # The worker's scans: stale in-flight attempts and abandoned ones.
    op.create_index("ix_order_attempts_state", "order_attempts", ["state", "created_at"])
    op.create_table(
        "outbox",
        sa.Column("id", sa.String(36), primary_key=True),
        sa.Column("event_type", sa.String(32), nullable=False),
        sa.Column("order_id", sa.String(36), nullable=False),
        sa.Column("payload", sa.Text(), nullable=False),
        sa.Column("request_id", sa.String(128), nullable=True),
        sa.Column("created_at", UtcDateTime(), nullable=False),
        sa.Column("sent_at", UtcDateTime(), nullable=True),
    )
    # Unsent rows (sent_at NULL) in id order for the relay; old sent rows for pruning.
    op.create_index("ix_outbox_sent_at", "outbox", ["sent_at", "id"])


def downgrade() -> None:
    op.drop_table("outbox")
    op.drop_table("order_attempts")
    op.drop_table("order_items")
    op.drop_table("orders")
