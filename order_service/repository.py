"""The order database: tables and every SQL statement the service and its worker run."""

from __future__ import annotations

import functools
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from common.db import UtcDateTime

metadata = sa.MetaData()

orders = sa.Table(
    "orders",
    metadata,
    sa.Column("id", sa.String(36), primary_key=True),
    sa.Column("user_id", sa.String(36), nullable=False),
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("total_amount", sa.Numeric(12, 2), nullable=False),
    sa.Column("reservation_id", sa.String(36), nullable=False),
    sa.Column("created_at", UtcDateTime(), nullable=False),
    sa.Column("updated_at", UtcDateTime(), nullable=False),
)

order_items = sa.Table(
    "order_items",
    metadata,
    sa.Column("order_id", sa.String(36), primary_key=True),
    sa.Column("product_id", sa.String(36), primary_key=True),
    sa.Column("quantity", sa.Integer(), nullable=False),
    sa.Column("price", sa.Numeric(12, 2), nullable=False),
)

order_attempts = sa.Table(
    "order_attempts",
    metadata,
    sa.Column("id", sa.String(36), primary_key=True),
    sa.Column("user_id", sa.String(36), nullable=False),
    sa.Column("idempotency_key", sa.String(255), nullable=True),
    sa.Column("request_hash", sa.String(64), nullable=False),
    sa.Column("state", sa.String(16), nullable=False),
    sa.Column("order_id", sa.String(36), nullable=True),
    sa.Column("created_at", UtcDateTime(), nullable=False),
    sa.Column("updated_at", UtcDateTime(), nullable=False),
)

outbox = sa.Table(
    "outbox",
    metadata,
    sa.Column("id", sa.String(36), primary_key=True),
    sa.Column("event_type", sa.String(32), nullable=False),
    sa.Column("order_id", sa.String(36), nullable=False),
    sa.Column("payload", sa.Text(), nullable=False),
    sa.Column("request_id", sa.String(128), nullable=True),
    sa.Column("created_at", UtcDateTime(), nullable=False),
    sa.Column("sent_at", UtcDateTime(), nullable=True),
)

PENDING, PAID, CANCELLED = "PENDING", "PAID", "CANCELLED"
# An attempt is `in_flight` while its request runs; `abandoned` once its request gave up (or
# the worker found it stale) with a reservation that may still hold stock; `failed` once that
# reservation is released; `completed` when it became an order.
IN_FLIGHT, ABANDONED, FAILED, COMPLETED = "in_flight", "abandoned", "failed", "completed"


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


@dataclass(frozen=True)
class OrderAttempt:
    id: str
    user_id: str
    idempotency_key: str | None
    request_hash: str
    state: str
    order_id: str | None


@dataclass(frozen=True)
class OrderFilter:
    user_id: str | None = None
    status: str | None = None


@dataclass(frozen=True)
class OutboxEvent:
    id: str
    event_type: str
    order_id: str
    payload: str
    request_id: str | None
    created_at: datetime


# The statements every order runs, built once: SQLAlchemy then only binds their parameters,
# where building each anew (and computing its cache key) cost about as much as the round trip.
_INSERT_ORDER = orders.insert()
_INSERT_ORDER_ITEMS = order_items.insert()
_INSERT_ATTEMPT = order_attempts.insert()
_INSERT_OUTBOX_EVENT = outbox.insert()
_SET_ORDER_STATUS = (
    orders.update()
    .where(orders.c.id == sa.bindparam("order_id"))
    .values(status=sa.bindparam("status"), updated_at=sa.bindparam("now"))
)
_ORDER_BY_ID = sa.select(orders).where(orders.c.id == sa.bindparam("order_id"))
_ORDER_BY_ID_FOR_UPDATE = _ORDER_BY_ID.with_for_update()
_ITEMS_OF_ORDERS = (
    sa.select(order_items)
    .where(order_items.c.order_id.in_(sa.bindparam("order_ids", expanding=True)))
    .order_by(order_items.c.order_id, order_items.c.product_id)
)
_MARK_SENT = (
    outbox.update()
    .where(outbox.c.id.in_(sa.bindparam("event_ids", expanding=True)))
    .values(sent_at=sa.bindparam("now"))
)
_MOVE_ATTEMPT = (
    order_attempts.update()
    .where(
        order_attempts.c.id == sa.bindparam("attempt_id"),
        order_attempts.c.state == sa.bindparam("from_state"),
    )
    .values(state=sa.bindparam("to_state"), updated_at=sa.bindparam("now"))
)


@functools.cache
def _claim_unsent_statement(limit: int) -> sa.Select[tuple[object, ...]]:
    """The relay's claim, built once for its batch size."""
    return (
        sa.select(outbox)
        .where(outbox.c.sent_at.is_(None))
        .order_by(outbox.c.id)
        .limit(limit)
        .with_for_update(skip_locked=True)
    )


@functools.cache
def _complete_attempts_statement(count: int) -> sa.Update:
    """`count` attempts moved from in flight to completed at once, each naming its own order;
    built once per batch size (a batch is bounded by the order service's group commit)."""
    attempt_ids: list[sa.BindParameter[str]] = [
        sa.bindparam(f"attempt_{index}") for index in range(count)
    ]
    order_ids: list[sa.BindParameter[str]] = [
        sa.bindparam(f"order_{index}") for index in range(count)
    ]
    return (
        order_attempts.update()
        .where(order_attempts.c.id.in_(attempt_ids), order_attempts.c.state == IN_FLIGHT)
        .values(
            state=COMPLETED,
            order_id=sa.case(
                *(
                    (order_attempts.c.id == attempt, order)
                    for attempt, order in zip(attempt_ids, order_ids, strict=True)
                )
            ),
            updated_at=sa.bindparam("now"),
        )
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
            )
            for row in rows
        ]


class AttemptRepository:
    def __init__(self, connection: Connection) -> None:
        self._db = connection

    def add_each(self, attempts: Sequence[OrderAttempt], now: datetime) -> None:
        """One statement; a key its user used before refuses them all (IntegrityError)."""
        self._db.execute(
            _INSERT_ATTEMPT,
            [
                {
                    "id": attempt.id,
                    "user_id": attempt.user_id,
                    "idempotency_key": attempt.idempotency_key,
                    "request_hash": attempt.request_hash,
                    "state": attempt.state,
                    "order_id": None,
                    "created_at": now,
                    "updated_at": now,
                }
                for attempt in attempts
            ],
        )

    def by_key(self, user_id: str, idempotency_key: str) -> OrderAttempt | None:
        row = self._db.execute(
            sa.select(order_attempts).where(
                order_attempts.c.user_id == user_id,
                order_attempts.c.idempotency_key == idempotency_key,
            )
        ).first()
        return None if row is None else _attempt(row)

    def restart_failed(self, old_id: str, attempt: OrderAttempt, now: datetime) -> bool:
        """A failed attempt left nothing behind, so its key may start over under a new id
        (a new reservation id: the old one is released for good)."""
        result = self._db.execute(
            order_attempts.update()
            .where(order_attempts.c.id == old_id, order_attempts.c.state == FAILED)
            .values(
                id=attempt.id,
                request_hash=attempt.request_hash,
                state=IN_FLIGHT,
                created_at=now,
                updated_at=now,
            )
        )
        return result.rowcount == 1

    def move(self, attempt_id: str, from_state: str, to_state: str, now: datetime) -> bool:
        """A conditional transition: false when someone else moved the attempt first."""
        result = self._db.execute(
            _MOVE_ATTEMPT,
            {"attempt_id": attempt_id, "from_state": from_state, "to_state": to_state, "now": now},
        )
        return result.rowcount == 1

    def complete_each(self, order_of_attempt: dict[str, str], now: datetime) -> int:
        """Moves each attempt still in flight to completed, naming its order; returns how many
        moved (fewer than asked when the worker claimed one first)."""
        attempt_ids = list(order_of_attempt)
        parameters: dict[str, object] = {"now": now}
        for index, attempt_id in enumerate(attempt_ids):
            parameters[f"attempt_{index}"] = attempt_id
            parameters[f"order_{index}"] = order_of_attempt[attempt_id]
        result = self._db.execute(_complete_attempts_statement(len(attempt_ids)), parameters)
        return int(result.rowcount)

    def stale_in_flight(self, started_before: datetime, limit: int) -> list[str]:
        query = (
            sa.select(order_attempts.c.id)
            .where(
                order_attempts.c.state == IN_FLIGHT, order_attempts.c.created_at < started_before
            )
            .limit(limit)
        )
        return [str(attempt_id) for attempt_id in self._db.execute(query).scalars()]

    def abandoned(self, limit: int) -> list[str]:
        query = sa.select(order_attempts.c.id).where(order_attempts.c.state == ABANDONED)
        return [str(attempt_id) for attempt_id in self._db.execute(query.limit(limit)).scalars()]


def _attempt(row: sa.Row[tuple[object, ...]]) -> OrderAttempt:
    return OrderAttempt(
        id=row.id,
        user_id=row.user_id,
        idempotency_key=row.idempotency_key,
        request_hash=row.request_hash,
        state=row.state,
        order_id=row.order_id,
    )


class OutboxRepository:
    def __init__(self, connection: Connection) -> None:
        self._db = connection

    def add(self, event: OutboxEvent) -> None:
        self.add_each([event])

    def add_each(self, events: Sequence[OutboxEvent]) -> None:
        self._db.execute(
            _INSERT_OUTBOX_EVENT,
            [
                {
                    "id": event.id,
                    "event_type": event.event_type,
                    "order_id": event.order_id,
                    "payload": event.payload,
                    "request_id": event.request_id,
                    "created_at": event.created_at,
                    "sent_at": None,
                }
                for event in events
            ],
        )

    def claim_unsent(self, limit: int) -> list[OutboxEvent]:
        """Locks up to `limit` unsent events; rows another relay holds are skipped, not awaited."""
        return [
            OutboxEvent(
                row.id, row.event_type, row.order_id, row.payload, row.request_id, row.created_at
            )
            for row in self._db.execute(_claim_unsent_statement(limit))
        ]

    def mark_sent(self, event_ids: Sequence[str], now: datetime) -> None:
        if event_ids:
            self._db.execute(_MARK_SENT, {"event_ids": list(event_ids), "now": now})

    def delete_sent_before(self, cutoff: datetime, limit: int) -> int:
        """Keeps the table bounded; in slices, so no long lock is ever held."""
        old = sa.select(outbox.c.id).where(outbox.c.sent_at < cutoff).limit(limit)
        ids = list(self._db.execute(old).scalars())
        if ids:
            self._db.execute(outbox.delete().where(outbox.c.id.in_(ids)))
        return len(ids)

    def status(self) -> tuple[int, datetime | None, datetime | None]:
        """(unsent count, oldest unsent created_at, latest sent_at); min and max keep the
        column's type, so the datetimes come back UTC-aware."""
        pending, oldest = self._db.execute(
            sa.select(sa.func.count(), sa.func.min(outbox.c.created_at)).where(
                outbox.c.sent_at.is_(None)
            )
        ).one()
        last_sent = self._db.execute(sa.select(sa.func.max(outbox.c.sent_at))).scalar()
        return int(pending), oldest, last_sent
