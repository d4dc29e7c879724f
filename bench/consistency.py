"""After the load: did stock, orders and events add up? Read straight from the databases."""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Collection
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa

from bench.events import EventDrain
from bench.setup import INITIAL_STOCK

PENDING_ORDERS = sa.text("SELECT COUNT(*) FROM orders WHERE status = 'PENDING' AND id >= :first")
# Every id sorts after this one: the whole table.
ALL_ORDERS = ""
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


@dataclass(frozen=True)
class Scope:
    """What a run on databases that held orders before it can check: the orders whose id is
    `first_order_id` or later (UUIDv7: those placed since), and the products of
    `stock_before` (every product those orders could name), whose stock then moved by
    exactly their quantities."""

    first_order_id: str
    stock_before: dict[str, int]


def stock_of(database_urls: dict[str, str], product_ids: Collection[str]) -> dict[str, int]:
    with _connect(database_urls["PRODUCT_DATABASE_URL"]) as products_db:
        return {
            str(product_id): int(stock)
            for product_id, stock in products_db.execute(
                sa.text("SELECT id, stock FROM products WHERE id IN :ids").bindparams(
                    sa.bindparam("ids", expanding=True)
                ),
                {"ids": list(product_ids)},
            )
        }


def check(database_urls: dict[str, str], drain: EventDrain, scope: Scope | None = None) -> Verdict:
    """Every order and product when `scope` is None (the bench started on empty databases
    with every product at INITIAL_STOCK); else only those of the scope."""
    drain.wait_until_quiet()
    verdict = Verdict()
    first = ALL_ORDERS if scope is None else scope.first_order_id
    with _connect(database_urls["ORDER_DATABASE_URL"]) as orders_db:
        statuses: dict[str, str] = {
            str(order_id): str(status)
            for order_id, status in orders_db.execute(
                sa.text("SELECT id, status FROM orders WHERE id >= :first"), {"first": first}
            )
        }
        ordered = _quantities_ordered(orders_db, first)
        verdict.pending_outbox = int(orders_db.execute(UNSENT_EVENTS).scalar_one())
    if scope is None:
        with _connect(database_urls["PRODUCT_DATABASE_URL"]) as products_db:
            stock_now = {
                str(product_id): int(stock)
                for product_id, stock in products_db.execute(
                    sa.text("SELECT id, stock FROM products")
                )
            }
        stock_before = dict.fromkeys(stock_now, INITIAL_STOCK)
    else:
        stock_now, stock_before = stock_of(database_urls, scope.stock_before), scope.stock_before
    for product_id, stock in stock_now.items():
        moved = stock_before[product_id] - stock
        if moved != ordered[product_id]:
            verdict.products_off[product_id] = moved - ordered[product_id]
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


def _quantities_ordered(orders_db: sa.Connection, first_order_id: str) -> Counter[str]:
    """Of each product, the quantity in orders from `first_order_id` on that still hold it."""
    ordered = Counter[str]()
    for product_id, quantity in orders_db.execute(
        sa.text(
            "SELECT i.product_id, SUM(i.quantity) FROM order_items i "
            "JOIN orders o ON o.id = i.order_id "
            "WHERE o.status <> 'CANCELLED' AND o.id >= :first GROUP BY i.product_id"
        ),
        {"first": first_order_id},
    ):
        ordered[str(product_id)] = int(quantity)
    return ordered


def wait_until_expired(
    database_urls: dict[str, str], *, timeout_s: float, first_order_id: str = ALL_ORDERS
) -> None:
    """Until no order (from `first_order_id` on) is PENDING: the worker has expired every
    unpaid one. TimeoutError when some still are after `timeout_s`: the expiry did not keep
    up."""
    deadline = time.monotonic() + timeout_s
    with _connect(database_urls["ORDER_DATABASE_URL"]) as orders_db:
        while True:
            pending = orders_db.execute(PENDING_ORDERS, {"first": first_order_id}).scalar_one()
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
    since = datetime.fromtimestamp(min(start for start, _ in windows_epoch_s), UTC).replace(
        tzinfo=None
    )
    with _connect(database_urls["ORDER_DATABASE_URL"]) as orders_db:
        # An event is sent after it is written, so `sent_at >= since` holds for every row
        # wanted: it reads only the recent end of the index on sent_at, not every event kept.
        rows = orders_db.execute(
            sa.text(
                "SELECT created_at, sent_at FROM outbox "
                "WHERE sent_at >= :since AND created_at >= :since"
            ),
            {"since": since},
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
