"""Migration 0004 on a database with orders in it: the count of unpaid orders starts from
what the tables hold, and orders PENDING at the upgrade get a payment deadline."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import sqlalchemy as sa
from alembic import command

from common.ids import new_id
from common.migrations import alembic_config
from order_service.app import MIGRATIONS_DIR


def test_the_upgrade_counts_unpaid_orders_and_sets_deadlines(databases):
    url = databases.create("orders_0004")
    config = alembic_config(url, MIGRATIONS_DIR)
    command.upgrade(config, "0002")
    engine = sa.create_engine(url)
    placed_at = datetime(2026, 12, 1, 9, 30, 15, 250000)  # stored naive UTC, as UtcDateTime does
    ann, bob, admin = new_id(), new_id(), new_id()
    pending_order = new_id()
    orders = [
        (pending_order, ann, "PENDING"),
        (new_id(), ann, "PAID"),
        (new_id(), bob, "CANCELLED"),
    ]
    # An admin's attempt in flight counts against its placer (there was no orderer before).
    attempts = [(ann, "completed"), (ann, "abandoned"), (admin, "in_flight"), (bob, "failed")]
    with engine.begin() as connection:
        for order_id, user_id, status in orders:
            connection.execute(
                sa.text(
                    "INSERT INTO orders (id, user_id, status, total_amount, reservation_id, "
                    "created_at, updated_at) VALUES (:id, :user, :status, 1, :id, :at, :at)"
                ),
                {"id": order_id, "user": user_id, "status": status, "at": placed_at},
            )
        for user_id, state in attempts:
            connection.execute(
                sa.text(
                    "INSERT INTO order_attempts (id, user_id, request_hash, state, created_at, "
                    "updated_at) VALUES (:id, :user, 'h', :state, :at, :at)"
                ),
                {"id": new_id(), "user": user_id, "state": state, "at": placed_at},
            )

    command.upgrade(config, "head")

    with engine.connect() as connection:
        counts = {
            str(row[0]): int(row[1])
            for row in connection.execute(sa.text("SELECT user_id, count FROM pending_orders"))
        }
        deadlines: dict[str, object] = {
            row.id: row.expires_at
            for row in connection.execute(sa.text("SELECT id, expires_at FROM orders"))
        }
        orderers = set(
            connection.execute(sa.text("SELECT user_id = orderer_id FROM order_attempts")).scalars()
        )
    engine.dispose()
    assert counts == {ann: 2, admin: 1}
    stored = deadlines.pop(pending_order)
    # SQLite hands back text, MySQL a datetime.
    due = datetime.fromisoformat(stored) if isinstance(stored, str) else stored
    assert isinstance(due, datetime)
    assert due.replace(tzinfo=UTC) - placed_at.replace(tzinfo=UTC) == timedelta(seconds=1800)
    assert set(deadlines.values()) == {None}
    assert orderers == {1}
