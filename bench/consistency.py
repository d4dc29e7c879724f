"""After the load: did stock, orders and events add up? Read straight from the databases."""

from __future__ import annotations

import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC
from typing import Any

import sqlalchemy as sa

from bench.events import EventDrain
from bench.setup import INITIAL_STOCK

PENDING_ORDERS = sa.text("SELECT COUNT(*) FROM orders WHERE status = 'PENDING'")
UNSENT_EVENTS = sa.text("SELECT COUNT(*) FROM outbox WHERE sent_at IS NULL")
EVENTS_BY_STATUS = {
    "PENDING": ["order_created"],
    "PAID": ["order_created", "order_paid"],
    "CANCELLED": ["order_cancelled", "order_created"],
}


@dataclass
class Verdict:
    orders: int = 0
    products_off: dict[str, int] = field(default_factory=dict)
    orders_with_wrong_events: int = 0
    duplicate_deliveries: int = 0
    pending_outbox: int = 0

    @property
    def consistent(self) -> bool:
        return (
            not self.products_off and not self.orders_with_wrong_events and not self.pending_outbox
        )

    def summary(self) -> str:
        return (
            f"{self.orders} orders; {len(self.products_off)} products whose stock does not match "
            f"their orders; {self.orders_with_wrong_events} orders without exactly their events; "
            f"{self.pending_outbox} events unsent; {self.duplicate_deliveries} duplicate "
            "deliveries (allowed: at-least-once)"
        )

    def as_dict(self) -> dict[str, Any]:
        return {
            "consistent": self.consistent,
            "orders": self.orders,
            "products_off": self.products_off,
            "orders_with_wrong_events": self.orders_with_wrong_events,
            "duplicate_deliveries": self.duplicate_deliveries,
            "pending_outbox": self.pending_outbox,
        }


def check(database_urls: dict[str, str], drain: EventDrain) -> Verdict:
    drain.wait_until_quiet()
    verdict = Verdict()
    with _connect(database_urls["ORDER_DATABASE_URL"]) as orders_db:
        statuses: dict[str, str] = {
            str(order_id): str(status)
            for order_id, status in orders_db.execute(sa.text("SELECT id, status FROM orders"))
        }
        ordered = Counter[str]()
        for product_id, quantity in orders_db.execute(
            sa.text(
                "SELECT i.product_id, SUM(i.quantity) FROM order_items i "
                "JOIN orders o ON o.id = i.order_id WHERE o.status <> 'CANCELLED' "
                "GROUP BY i.product_id"
            )
        ):
            ordered[str(product_id)] = int(quantity)
        verdict.pending_outbox = int(
            orders_db.execute(
                sa.text("SELECT COUNT(*) FROM outbox WHERE sent_at IS NULL")
            ).scalar_one()
        )
    with _connect(database_urls["PRODUCT_DATABASE_URL"]) as products_db:
        for product_id, stock in products_db.execute(sa.text("SELECT id, stock FROM products")):
            moved = INITIAL_STOCK - int(stock)
            if moved != ordered[str(product_id)]:
                verdict.products_off[str(product_id)] = moved - ordered[str(product_id)]
    verdict.orders = len(statuses)
    events = drain.events_by_order()
    verdict.orders_with_wrong_events = len(
        [
            order_id
            for order_id, status in statuses.items()
            if sorted(events.get(order_id, [])) != EVENTS_BY_STATUS[status]
        ]
    )
    verdict.duplicate_deliveries = drain.deliveries - len(drain.by_event_id)
    return verdict


def wait_until_expired(database_urls: dict[str, str], *, timeout_s: float) -> None:
    """Until no order is PENDING (the worker has expired every unpaid one); TimeoutError when
    some still are after `timeout_s`: the expiry did not keep up."""
    deadline = time.monotonic() + timeout_s
    with _connect(database_urls["ORDER_DATABASE_URL"]) as orders_db:
        while True:
            pending = orders_db.execute(PENDING_ORDERS).scalar_one()
            orders_db.rollback()  # a fresh snapshot each time
            if not pending:
                return
            if time.monotonic() > deadline:
                raise TimeoutError(f"{pending} orders still PENDING after {timeout_s:.0f} s")
            time.sleep(0.5)


def relay_lags_ms(
    database_urls: dict[str, str], *, windows_epoch_s: list[tuple[float, float]]
) -> list[float]:
    """Commit-to-SQS delay of each event written within one of the windows, from the outbox."""
    with _connect(database_urls["ORDER_DATABASE_URL"]) as orders_db:
        rows = orders_db.execute(
            sa.text("SELECT created_at, sent_at FROM outbox WHERE sent_at IS NOT NULL")
        ).all()
    return [
        (sent - created).total_seconds() * 1000
        for created, sent in rows
        if any(
            start <= created.replace(tzinfo=UTC).timestamp() < end for start, end in windows_epoch_s
        )
    ]


def _connect(url: str) -> sa.Connection:
    return sa.create_engine(url, poolclass=sa.pool.NullPool).connect()
