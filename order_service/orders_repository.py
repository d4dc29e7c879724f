"""Orders and their items: the SQL behind placing, settling and reading orders."""

from __future__ import annotations

import functools
import json
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from decimal import Decimal
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from order_service.pending_orders import PendingOrders
from order_service.tables import order_items, orders

PENDING, PAID, CANCELLED = "PENDING", "PAID", "CANCELLED"
# Why an order is (being) cancelled: by its owner, by an admin, or by the payment timeout.
CUSTOMER_CANCEL, ADMIN_CANCEL, PAYMENT_TIMEOUT = "customer", "admin", "payment_timeout"


@dataclass(frozen=True)
class OrderLine:
    product_id: str
    quantity: int
    price: Decimal
    # The product's name when ordered; None only on items ordered before names were kept.
    name: str | None = None


# An address's fields as the API spells them, and whether each must be there.
_ADDRESS_FIELDS = {
    "label": False,
    "recipient": True,
    "line1": True,
    "line2": False,
    "city": True,
    "region": False,
    "postalCode": True,
    "country": True,
    "phone": False,
}
# Far above what the user service accepts; a bound on what a copy can cost us to keep.
_MAX_ADDRESS_FIELD_CHARS = 1000


@dataclass(frozen=True)
class ShippingAddress:
    """The copy of an address of the user's address book that an order keeps: later edits of
    the address change no order. Its fields are the API's (`shippingAddress`)."""

    fields: tuple[tuple[str, str | None], ...]

    @classmethod
    def from_json(cls, document: Mapping[str, Any]) -> ShippingAddress:
        """ValueError unless every required field is a string and every other a string or
        null, each of a sane length; fields the copy does not keep (ids, times) are ignored."""
        fields = []
        for name, required in _ADDRESS_FIELDS.items():
            value = document.get(name)
            if not (isinstance(value, str) or (value is None and not required)):
                raise ValueError(f"address field {name!r} is {type(value).__name__}")
            if value is not None and len(value) > _MAX_ADDRESS_FIELD_CHARS:
                raise ValueError(f"address field {name!r} is too long")
            fields.append((name, value))
        return cls(tuple(fields))

    def as_json(self) -> dict[str, str | None]:
        return dict(self.fields)


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

    shipping_address: ShippingAddress | None = None
    # Set while the order is PENDING (created_at + ORDER_PAYMENT_TIMEOUT_S), None after.
    expires_at: datetime | None = None


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
    .values(status=sa.bindparam("status"), updated_at=sa.bindparam("now"), expires_at=None)
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
_BEGUN_CANCELS_FOR_UPDATE = (
    sa.select(orders.c.id, orders.c.user_id)
    .where(
        orders.c.id.in_(sa.bindparam("order_ids", expanding=True)),
        orders.c.status == PENDING,
        orders.c.cancel_reason.is_not(None),
    )
    .order_by(orders.c.id)
    .with_for_update()
)
_CANCEL_EACH = (
    orders.update()
    .where(orders.c.id.in_(sa.bindparam("order_ids", expanding=True)))
    .values(status=CANCELLED, updated_at=sa.bindparam("now"), expires_at=None)
)
_ITEM = order_items.alias("item")


# Each item is aggregated as one line of plain text, "productId,quantity,price,name" (no comma
# and name when the name is NULL), not as a JSON_ARRAY: MariaDB keeps an aggregate's work table
# in memory only while each value it aggregates is typed at most 512 characters long, and a
# JSON_ARRAY holding a VARCHAR(200) is typed longer (escaping could make each character six),
# so every read of an order made that table on disk, two files created and removed: 247-257 µs
# of the server's CPU per read of one order, against 117-130 µs for a line typed 264
# characters long, whatever it holds. The id, the quantity and the price hold no comma, so the
# name is everything after the third. Built with `+` (CONCAT on MySQL, || on SQLite, whose
# CONCAT_WS is too recent for the SQLite Python 3.11 ships with).
_LINE_AS_TEXT = (
    _ITEM.c.product_id
    + ","
    + sa.cast(_ITEM.c.quantity, sa.String)
    + ","
    + sa.cast(_ITEM.c.price, sa.String)
    + sa.func.coalesce("," + _ITEM.c.name, "")
)


def _items_in_one_column(lines: sa.ColumnElement[Any]) -> sa.Label[Any]:
    """An order's items as one JSON array of lines in its own row (in no particular order), so
    orders are read with their items in one statement and one row each. Read as a row per
    item, a page of 21 orders was 63 rows, and PyMySQL's decoding of them was most of the order
    service's CPU for the page."""
    return (
        sa.select(lines)
        .where(_ITEM.c.order_id == orders.c.id)
        .scalar_subquery()
        .label("items_json")
    )


# The same aggregate is spelled differently by each database the services run on.
_ORDERS_WITH_ITEMS = {
    "mysql": sa.select(orders, _items_in_one_column(sa.func.json_arrayagg(_LINE_AS_TEXT))),
    "sqlite": sa.select(orders, _items_in_one_column(sa.func.json_group_array(_LINE_AS_TEXT))),
}
# One order with its items (pay, cancel, get). Locking it locks the order's row, the one a pay,
# a cancel and the expiry's claim contend for; nothing locks item rows.
_ORDER_BY_ID = {
    dialect: select.where(orders.c.id == sa.bindparam("order_id"))
    for dialect, select in _ORDERS_WITH_ITEMS.items()
}
_ORDER_BY_ID_FOR_UPDATE = {
    dialect: select.with_for_update() for dialect, select in _ORDER_BY_ID.items()
}


# The index whose (prefix, id) order a page reads backwards, by (user filter, status filter).
_PAGE_INDEX = {
    (True, False): "ix_orders_user_id",
    (True, True): "ix_orders_user_id",
    (False, True): "ix_orders_status_id",
}


@functools.cache
def _page_statement(dialect: str, by_user: bool, by_status: bool, after: bool) -> sa.Select[Any]:
    """A page's statement for each shape of filter, built once: building it anew for each
    page (and computing its cache key) cost about 85 µs, 7% of the page's CPU."""
    conditions: list[sa.ColumnElement[bool]] = []
    if by_user:
        conditions.append(orders.c.user_id == sa.bindparam("user_id"))
    if by_status:
        conditions.append(orders.c.status == sa.bindparam("status"))
    if after:
        conditions.append(orders.c.id < sa.bindparam("before_id"))
    query = _ORDERS_WITH_ITEMS[dialect].where(*conditions).order_by(orders.c.id.desc())
    query = query.limit(sa.bindparam("limit", type_=sa.Integer))
    index = _PAGE_INDEX.get((by_user, by_status))
    if index is not None:
        # Named, not left to statistics: with few orders of a status MariaDB preferred
        # ix_orders_cancel_begun (also led by status) and then sorted the whole status.
        query = query.with_hint(orders, f"FORCE INDEX ({index})", dialect_name="mysql")
    return query


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
                    "shipping_address": _address_column(order.shipping_address),
                    "expires_at": order.expires_at,
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
                    "name": line.name,
                }
                for order in new_orders
                for line in order.items
            ],
        )

    def get(self, order_id: str, *, for_update: bool = False) -> Order | None:
        statements = _ORDER_BY_ID_FOR_UPDATE if for_update else _ORDER_BY_ID
        found = _orders_of(
            self._db.execute(statements[self._db.dialect.name], {"order_id": order_id})
        )
        return found[0] if found else None

    def page(self, where: OrderFilter, before_id: str | None, limit: int) -> list[Order]:
        """Newest first: ids are UUIDv7, so descending id is descending creation, and a page
        after `before_id` (the last id seen) holds only older orders, whatever is inserted
        meanwhile. The (user_id, id) and (status, id) indexes and the primary key serve each
        filter read backwards, without a sort (EXPLAIN on MariaDB 10.11: "Using where" on
        ix_orders_user_id / ix_orders_status_id / PRIMARY, no filesort; a test holds it)."""
        query = _page_statement(
            self._db.dialect.name,
            where.user_id is not None,
            where.status is not None,
            before_id is not None,
        )
        parameters = {
            "user_id": where.user_id,
            "status": where.status,
            "before_id": before_id,
            "limit": limit,
        }
        return _orders_of(self._db.execute(query, parameters))

    def set_status(self, order_id: str, status: str, now: datetime) -> None:
        """A PENDING order becomes PAID or CANCELLED: its payment deadline goes in the same
        statement, and its owner's unpaid slot is freed in the same transaction."""
        self._db.execute(_SET_ORDER_STATUS, {"order_id": order_id, "status": status, "now": now})
        PendingOrders(self._db).free_slot_of_order(order_id)

    def begin_cancel(self, order_id: str, reason: str, now: datetime) -> bool:
        """Records the cancel's reason on a PENDING order not yet being cancelled; false when
        the order has moved on or another cancel began first (its reason is kept)."""
        result = self._db.execute(
            _BEGIN_CANCEL, {"order_id": order_id, "reason": reason, "now": now}
        )
        return result.rowcount == 1

    def finish_cancel(self, order_id: str, now: datetime) -> bool:
        """A begun cancel becomes CANCELLED (its payment deadline gone, its owner's unpaid slot
        freed in the same transaction); false when another finisher got there first."""
        return bool(self.finish_cancels([order_id], now))

    def finish_cancels(self, order_ids: Sequence[str], now: datetime) -> list[str]:
        """Begun cancels become CANCELLED, in three statements however many (lock those still
        begun, mark them, free their owners' unpaid slots); returns the ids it finished."""
        begun = self._db.execute(_BEGUN_CANCELS_FOR_UPDATE, {"order_ids": list(order_ids)}).all()
        if not begun:
            return []
        finished = [row.id for row in begun]
        self._db.execute(_CANCEL_EACH, {"order_ids": finished, "now": now})
        PendingOrders(self._db).free_slots(Counter(row.user_id for row in begun))
        return finished

    def begin_expiries(self, now: datetime, limit: int) -> list[Order]:
        """Begins the payment-timeout cancel of up to `limit` PENDING orders due by `now` (the
        oldest first) and returns them. The rows are claimed FOR UPDATE SKIP LOCKED, so another
        replica's round takes other orders, and a pay holding an order's lock wins it (the
        order is no longer due once paid). Two statements: claim (with the items), mark."""
        due = (
            self._orders_with_items()
            .where(
                orders.c.expires_at <= now,
                orders.c.status == PENDING,
                orders.c.cancel_reason.is_(None),
            )
            .order_by(orders.c.expires_at)
            .limit(limit)
            .with_for_update(skip_locked=True)
        )
        claimed = _orders_of(self._db.execute(due))
        if not claimed:
            return []
        # Locked as read, so every one of them is still due and gets the reason.
        self._db.execute(
            orders.update()
            .where(orders.c.id.in_([order.id for order in claimed]))
            .values(cancel_reason=PAYMENT_TIMEOUT, updated_at=now)
        )
        return [replace(order, cancel_reason=PAYMENT_TIMEOUT, updated_at=now) for order in claimed]

    def cancels_begun_before(self, cutoff: datetime, limit: int) -> list[Order]:
        """PENDING orders whose cancel began before `cutoff` and has not finished."""
        query = (
            self._orders_with_items()
            .where(
                orders.c.status == PENDING,
                orders.c.cancel_reason.is_not(None),
                orders.c.updated_at < cutoff,
            )
            .order_by(orders.c.updated_at)
            .limit(limit)
        )
        return _orders_of(self._db.execute(query))

    def _orders_with_items(self) -> sa.Select[Any]:
        return _ORDERS_WITH_ITEMS[self._db.dialect.name]


def _orders_of(rows: Iterable[sa.Row[Any]]) -> list[Order]:
    """Orders read by `_ORDERS_WITH_ITEMS`, each with its items ordered by product."""
    return [_order_of(row, _lines_of_column(row.items_json)) for row in rows]


def _lines_of_column(stored: str | None) -> tuple[OrderLine, ...]:
    # NULL from MySQL's aggregate of no rows, "[]" from SQLite's.
    lines = [_line_of_text(line) for line in json.loads(stored or "[]")]
    return tuple(sorted(lines, key=lambda line: line.product_id))


def _line_of_text(line: str) -> OrderLine:
    """A line as _LINE_AS_TEXT writes it."""
    product_id, quantity, price, *name = line.split(",", 3)
    return OrderLine(product_id, int(quantity), Decimal(price), name[0] if name else None)


def _order_of(row: sa.Row[Any], items: tuple[OrderLine, ...]) -> Order:
    return Order(
        id=row.id,
        user_id=row.user_id,
        status=row.status,
        total_amount=Decimal(row.total_amount),
        reservation_id=row.reservation_id,
        items=items,
        created_at=row.created_at,
        updated_at=row.updated_at,
        cancel_reason=row.cancel_reason,
        shipping_address=_address_of_column(row.shipping_address),
        expires_at=row.expires_at,
    )


def _address_column(address: ShippingAddress | None) -> str | None:
    return None if address is None else json.dumps(address.as_json(), separators=(",", ":"))


def _address_of_column(stored: str | None) -> ShippingAddress | None:
    return None if stored is None else ShippingAddress.from_json(json.loads(stored))
