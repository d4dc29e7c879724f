"""The attempt journal: every order attempt, written before any stock moves (see service.py)."""

from __future__ import annotations

import functools
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from common.pruning import delete_where
from order_service.tables import order_attempts

# An attempt is `in_flight` while its request runs; `abandoned` once its request gave up (or
# the worker found it stale) with a reservation that may still hold stock; `failed` once that
# reservation is released; `completed` when it became an order.
IN_FLIGHT, ABANDONED, FAILED, COMPLETED = "in_flight", "abandoned", "failed", "completed"


@dataclass(frozen=True)
class OrderAttempt:
    id: str
    user_id: str
    idempotency_key: str | None
    request_hash: str
    state: str
    order_id: str | None
    # Whose order it would be: the placer, or the user an admin orders for.
    orderer_id: str


# Built once: SQLAlchemy then only binds their parameters (see orders_repository).
_INSERT_ATTEMPT = order_attempts.insert()
_MOVE_ATTEMPT = (
    order_attempts.update()
    .where(
        order_attempts.c.id == sa.bindparam("attempt_id"),
        order_attempts.c.state == sa.bindparam("from_state"),
    )
    .values(state=sa.bindparam("to_state"), updated_at=sa.bindparam("now"))
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
                    "orderer_id": attempt.orderer_id,
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
                orderer_id=attempt.orderer_id,
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

    def delete_failed_before(self, cutoff: datetime, limit: int) -> int:
        """Failed attempts left nothing behind but their key, which a retry may reuse anyway."""
        failed_long_ago = sa.and_(
            order_attempts.c.state == FAILED, order_attempts.c.created_at < cutoff
        )
        return delete_where(self._db, order_attempts, failed_long_ago, limit)

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
        orderer_id=row.orderer_id,
    )
