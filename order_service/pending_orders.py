"""The count of each user's unpaid orders, the number MAX_PENDING_ORDERS caps.

A user's count is their PENDING orders plus their attempts still in flight or abandoned (an
attempt may hold stock until its reservation is released). Every change to it happens in the
same transaction as the change it counts, so it stays exact whatever dies when:
- `take_slots`: with the attempts' journal entry, and with a failed key's restart;
- `free_slot_of_attempt`: when an abandoned attempt's reservation is released (it fails);
- `free_slot_of_order`, `free_slots`: when orders leave PENDING (paid or cancelled).
The count is kept when the cap is off too, so turning it on later is exact at once.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from common.errors import Conflict
from order_service.tables import order_attempts, orders, pending_orders


class PendingOrdersCapReached(Conflict):
    def __init__(self, cap: int) -> None:
        super().__init__(
            f"This user already has {cap} unpaid orders, the most allowed "
            "(MAX_PENDING_ORDERS); pay or cancel one before placing another."
        )


def _per_user(users: int) -> tuple[list[sa.BindParameter[str]], sa.Case[int]]:
    """`user_id IN (:user_0, ...)` and `CASE WHEN user_id = :user_0 THEN :slots_0 ... END`."""
    user_ids: list[sa.BindParameter[str]] = [sa.bindparam(f"user_{i}") for i in range(users)]
    slots: list[sa.BindParameter[int]] = [sa.bindparam(f"slots_{i}") for i in range(users)]
    return user_ids, sa.case(
        *((pending_orders.c.user_id == user, n) for user, n in zip(user_ids, slots, strict=True))
    )


@functools.cache
def _take_slots_statement(users: int, capped: bool) -> sa.Update:
    """`users` counters raised at once, each by its own number, and with a cap only where every
    one stays within it; built once per batch size (bounded by the journal's group commit)."""
    user_ids, added = _per_user(users)
    statement = (
        pending_orders.update()
        .where(pending_orders.c.user_id.in_(user_ids))
        .values(count=pending_orders.c.count + added)
    )
    if capped:
        statement = statement.where(pending_orders.c.count + added <= sa.bindparam("cap"))
    return statement


@functools.cache
def _free_slots_statement(users: int) -> sa.Update:
    """`users` counters lowered at once, each by its own number and never below zero (see
    `_free_slot_of`); built once per batch size (bounded by the expiry's batch)."""
    user_ids, freed = _per_user(users)
    return (
        pending_orders.update()
        .where(pending_orders.c.user_id.in_(user_ids))
        .values(
            count=sa.case(
                (pending_orders.c.count >= freed, pending_orders.c.count - freed), else_=0
            )
        )
    )


def _free_slot_of(user_id: sa.ScalarSelect[str]) -> sa.Update:
    # Never below zero: a count that drifted low (orders placed by a version that kept none)
    # must not stop an order from being paid or cancelled.
    return (
        pending_orders.update()
        .where(pending_orders.c.user_id == user_id, pending_orders.c.count > 0)
        .values(count=pending_orders.c.count - 1)
    )


_FREE_SLOT_OF_ATTEMPT = _free_slot_of(
    sa.select(order_attempts.c.orderer_id)
    .where(order_attempts.c.id == sa.bindparam("attempt_id"))
    .scalar_subquery()
)
_FREE_SLOT_OF_ORDER = _free_slot_of(
    sa.select(orders.c.user_id).where(orders.c.id == sa.bindparam("order_id")).scalar_subquery()
)


class PendingOrders:
    def __init__(self, connection: Connection) -> None:
        self._db = connection

    def start_counting(self, user_id: str) -> None:
        """The user's counter, at zero; IntegrityError when it exists already."""
        self._db.execute(pending_orders.insert(), {"user_id": user_id, "count": 0})

    def take_slots(self, slots_of_user: Mapping[str, int], cap: int) -> None:
        """One statement for a batch. Raises PendingOrdersCapReached, changing nothing, when
        any of the users would pass `cap` (0: no cap). Every counter must exist."""
        parameters = {"cap": cap, **_user_parameters(slots_of_user)}
        result = self._db.execute(_take_slots_statement(len(slots_of_user), cap > 0), parameters)
        if result.rowcount != len(slots_of_user):
            raise PendingOrdersCapReached(cap)

    def free_slots(self, slots_of_user: Mapping[str, int]) -> None:
        """One statement for a batch of orders leaving PENDING, in user id order."""
        self._db.execute(_free_slots_statement(len(slots_of_user)), _user_parameters(slots_of_user))

    def free_slot_of_attempt(self, attempt_id: str) -> None:
        self._db.execute(_FREE_SLOT_OF_ATTEMPT, {"attempt_id": attempt_id})

    def free_slot_of_order(self, order_id: str) -> None:
        self._db.execute(_FREE_SLOT_OF_ORDER, {"order_id": order_id})

    def count_of(self, user_id: str) -> int | None:
        return self._db.execute(
            sa.select(pending_orders.c.count).where(pending_orders.c.user_id == user_id)
        ).scalar()


def _user_parameters(slots_of_user: Mapping[str, int]) -> dict[str, object]:
    parameters: dict[str, object] = {}
    for index, user_id in enumerate(sorted(slots_of_user)):
        parameters[f"user_{index}"] = user_id
        parameters[f"slots_{index}"] = slots_of_user[user_id]
    return parameters
