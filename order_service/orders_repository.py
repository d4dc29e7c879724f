"""Orders and their items: the SQL behind placing, settling and reading orders."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from order_service.tables import order_items, orders

PENDING, PAID, CANCELLED = "PENDING", "PAID", "CANCELLED"
# Why an order is (being) cancelled: by its owner, by an admin, or by the payment timeout.
CUSTOMER_CANCEL, ADMIN_CANCEL, PAYMENT_TIMEOUT = "customer", "admin", "payment_timeout"


@dataclass(frozen=True)
class OrderLine:
    product_id: str
    quantity: int
    price: Decimal


@dataclass(frozen=True)
class Order:
    id: str
    user_id: str
    status: str
    total_amount: Decimal
    reservation_id: str
    items: tuple[OrderLine, ...]
    created_at: datetime
    updated_at: datetime
    # Set when a cancel begins: a PENDING order with a reason is being cancelled.
    cancel_reason: str | None = None

    @property
    def cancelling(self) -> bool:
        return self.status == PENDING and self.cancel_reason is not None


@dataclass(frozen=True)
class OrderFilter:
    user_id: str | None = None
    status: str | None = None


# The statements every order runs, built once: SQLAlchemy then only binds their parameters,
# where building each anew (and computing its cache key) cost about as much as the round trip.
_INSERT_ORDER = orders.insert()
_INSERT_ORDER_ITEMS = order_items.insert()
_SET_ORDER_STATUS = (
    orders.update()
    .where(orders.c.id == sa.bindparam("order_id"))
    .values(status=sa.bindparam("status"), updated_at=sa.bindparam("now"))
)
_BEGIN_CANCEL = (
    orders.update()
    .where(
        orders.c.id == sa.bindparam("order_id"),
        orders.c.status == PENDING,
        orders.c.cancel_reason.is_(None),
    )
    .values(cancel_reason=sa.bindparam("reason"), updated_at=sa.bindparam("now"))
)
_FINISH_CANCEL = (
    orders.update()
    .where(
        orders.c.id == sa.bindparam("order_id"),
        orders.c.status == PENDING,
        orders.c.cancel_reason.is_not(None),
    )
    .values(status=CANCELLED, updated_at=sa.bindparam("now"))
)
_ORDER_BY_ID = sa.select(orders).where(orders.c.id == sa.bindparam("order_id"))
_ORDER_BY_ID_FOR_UPDATE = _ORDER_BY_ID.with_for_update()
_ITEMS_OF_ORDERS = (
    sa.select(order_items)
    .where(order_items.c.order_id.in_(sa.bindparam("order_ids", expanding=True)))
    .order_by(order_items.c.order_id, order_items.c.product_id)
)


class OrderRepository:
    def __init__(self, connection: Connection) -> None:
        self._db = connection

    def add_each(self, new_orders: Sequence[Order]) -> None:
        """Several orders in two statements: the orders, then all their items."""
        self._db.execute(
            _INSERT_ORDER,
            [
                {
                    "id": order.id,
                    "user_id": order.user_id,
                    "status": order.status,
                    "total_amount": order.total_amount,
                    "reservation_id": order.reservation_id,
                    "created_at": order.created_at,
                    "updated_at": order.updated_at,
                }
                for order in new_orders
            ],
        )
        self._db.execute(
            _INSERT_ORDER_ITEMS,
            [
                {
                    "order_id": order.id,
                    "product_id": line.product_id,
                    "quantity": line.quantity,
                    "price": line.price,
                }
                for order in new_orders
                for line in order.items
            ],
        )

    def get(self, order_id: str, *, for_update: bool = False) -> Order | None:
        query = _ORDER_BY_ID_FOR_UPDATE if for_update else _ORDER_BY_ID
        found = self._with_items(self._db.execute(query, {"order_id": order_id}).all())
        return found[0] if found else None

    def page(self, where: OrderFilter, after_id: str | None, limit: int) -> list[Order]:
        """In id (creation) order; the (user_id, id) and (status, id) indexes serve each filter."""
        conditions: list[sa.ColumnElement[bool]] = []
        if where.user_id is not None:
            conditions.append(orders.c.user_id == where.user_id)
        if where.status is not None:
            conditions.append(orders.c.status == where.status)
        if after_id is not None:
            conditions.append(orders.c.id > after_id)
        query = sa.select(orders).where(*conditions).order_by(orders.c.id).limit(limit)
        return self._with_items(self._db.execute(query).all())

    def set_status(self, order_id: str, status: str, now: datetime) -> None:
        self._db.execute(_SET_ORDER_STATUS, {"order_id": order_id, "status": status, "now": now})

    def begin_cancel(self, order_id: str, reason: str, now: datetime) -> bool:
        """Records the cancel's reason on a PENDING order not yet being cancelled; false when
        the order has moved on or another cancel began first (its reason is kept)."""
        result = self._db.execute(
            _BEGIN_CANCEL, {"order_id": order_id, "reason": reason, "now": now}
        )
        return result.rowcount == 1

    def finish_cancel(self, order_id: str, now: datetime) -> bool:
        """A begun cancel becomes CANCELLED; false when another finisher got there first."""
        result = self._db.execute(_FINISH_CANCEL, {"order_id": order_id, "now": now})
        return result.rowcount == 1

    def cancels_begun_before(self, cutoff: datetime, limit: int) -> list[Order]:
        """PENDING orders whose cancel began before `cutoff` and has not finished."""
        query = (
            sa.select(orders)
            .where(
                orders.c.status == PENDING,
                orders.c.cancel_reason.is_not(None),
                orders.c.updated_at < cutoff,
            )
            .order_by(orders.c.updated_at)
            .limit(limit)
        )
        return self._with_items(self._db.execute(query).all())

    def _with_items(self, rows: Sequence[sa.Row[tuple[object, ...]]]) -> list[Order]:
        """One query for the items of every order on the page."""
        if not rows:
            return []
        lines: dict[str, list[OrderLine]] = {row.id: [] for row in rows}
        for item in self._db.execute(_ITEMS_OF_ORDERS, {"order_ids": list(lines)}):
            lines[item.order_id].append(
                OrderLine(item.product_id, int(item.quantity), Decimal(item.price))
            )
        return [
            Order(
                id=row.id,
                user_id=row.user_id,
                status=row.status,
                total_amount=Decimal(row.total_amount),
                reservation_id=row.reservation_id,
                items=tuple(lines[row.id]),
                created_at=row.created_at,
                updated_at=row.updated_at,
                cancel_reason=row.cancel_reason,
            )
            for row in rows
        ]
