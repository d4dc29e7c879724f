"""item names, shipping address copies, payment deadlines and the count of unpaid orders

- order_items.name: the product's name when ordered (NULL on items ordered before this).
- orders.shipping_address: a JSON copy of the address the order ships to.
- orders.expires_at: when a PENDING order's time to be paid runs out (NULL once it is paid or
  cancelled), indexed for the expiry scan. Orders PENDING at the upgrade get the default timeout
  counted from their creation.
- order_attempts.orderer_id: whose order an attempt would be (an admin may order for another
  user); earlier attempts are taken as their placer's.
- pending_orders: each user's PENDING orders plus attempts in flight or abandoned, the count
  MAX_PENDING_ORDERS caps, started from what the tables hold at the upgrade.

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

# ORDER_PAYMENT_TIMEOUT_S's default, for the orders already PENDING at the upgrade.
_DEFAULT_PAYMENT_TIMEOUT_S = 1800


def upgrade() -> None:
    op.add_column("order_items", sa.Column("name", sa.String(200), nullable=True))
    op.add_column("orders", sa.Column("shipping_address", sa.Text(), nullable=True))
    op.add_column("orders", sa.Column("expires_at", UtcDateTime(), nullable=True))
    # The expiry scan is `expires_at <= now ORDER BY expires_at`: expires_at is set exactly while
    # an order is PENDING, so this one column is the whole condition (NULLs sort first, outside
    # the range) and a status prefix would only widen every entry.
    op.create_index("ix_orders_expires_at", "orders", ["expires_at"])
    _set_deadlines_of_pending_orders()

    op.add_column("order_attempts", sa.Column("orderer_id", sa.String(36), nullable=True))
    op.execute("UPDATE order_attempts SET orderer_id = user_id")
    with op.batch_alter_table("order_attempts") as attempts:  # SQLite rebuilds the table
        attempts.alter_column("orderer_id", existing_type=sa.String(36), nullable=False)

    op.create_table(
        "pending_orders",
        sa.Column("user_id", sa.String(36), primary_key=True),
        sa.Column("count", sa.Integer(), nullable=False),
        sa.CheckConstraint("count >= 0", name="ck_pending_orders_count_not_negative"),
    )
    op.execute(
        "INSERT INTO pending_orders (user_id, count) "
        "SELECT user_id, COUNT(*) FROM ("
        "  SELECT user_id FROM orders WHERE status = 'PENDING'"
        "  UNION ALL"
        "  SELECT orderer_id FROM order_attempts WHERE state IN ('in_flight', 'abandoned')"
        ") AS unpaid GROUP BY user_id"
    )


def _set_deadlines_of_pending_orders() -> None:
    if op.get_bind().dialect.name in {"mysql", "mariadb"}:
        deadline = "created_at + INTERVAL :seconds SECOND"
    else:
        deadline = "strftime('%Y-%m-%d %H:%M:%f', created_at, '+' || :seconds || ' seconds')"
    op.get_bind().execute(
        sa.text(f"UPDATE orders SET expires_at = {deadline} WHERE status = 'PENDING'"),  # noqa: S608 - constant SQL
        {"seconds": _DEFAULT_PAYMENT_TIMEOUT_S},
    )


def downgrade() -> None:
    op.drop_table("pending_orders")
    with op.batch_alter_table("order_attempts") as attempts:
        attempts.drop_column("orderer_id")
    op.drop_index("ix_orders_expires_at", table_name="orders")
    op.drop_column("orders", "expires_at")
    op.drop_column("orders", "shipping_address")
    op.drop_column("order_items", "name")
