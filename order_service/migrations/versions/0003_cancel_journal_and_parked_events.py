"""the cancel's journal on the order, and poison events parked in the outbox

`orders.cancel_reason` is written (and committed) before a cancel releases the order's stock:
a PENDING order with a reason is being cancelled, pay refuses it, and the worker finishes it.
`outbox.attempts` counts the sends SQS refused; past the limit the row gets `parked_at` and the
relay stops claiming it, so one event SQS will never take cannot hold up the rest.

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


def upgrade() -> None:
    # Batch operations: plain ALTERs on MySQL, a table rebuilt on SQLite (which cannot add a
    # constraint or drop a column in place).
    with op.batch_alter_table("orders") as orders:
        orders.add_column(sa.Column("cancel_reason", sa.String(16), nullable=True))
        orders.create_check_constraint(
            "ck_orders_cancel_reason_known",
            "cancel_reason IS NULL OR cancel_reason IN ('customer', 'admin', 'payment_timeout')",
        )
        # The worker's scan for cancels begun and not finished: PENDING with a reason.
        orders.create_index("ix_orders_cancel_begun", ["status", "cancel_reason", "updated_at"])
    with op.batch_alter_table("outbox") as outbox:
        outbox.add_column(sa.Column("attempts", sa.Integer(), nullable=False, server_default="0"))
        outbox.add_column(sa.Column("parked_at", UtcDateTime(), nullable=True))
        # The relay's claim (unsent, not parked, in id order) reads this index in order;
        # pruning still finds old sent rows by its first column.
        outbox.drop_index("ix_outbox_sent_at")
        outbox.create_index("ix_outbox_unsent", ["sent_at", "parked_at", "id"])


def downgrade() -> None:
    with op.batch_alter_table("outbox") as outbox:
        outbox.drop_index("ix_outbox_unsent")
        outbox.create_index("ix_outbox_sent_at", ["sent_at", "id"])
        outbox.drop_column("parked_at")
        outbox.drop_column("attempts")
    with op.batch_alter_table("orders") as orders:
        orders.drop_index("ix_orders_cancel_begun")
        orders.drop_constraint("ck_orders_cancel_reason_known", type_="check")
        orders.drop_column("cancel_reason")
