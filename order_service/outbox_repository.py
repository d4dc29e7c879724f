"""The outbox table's SQL: events written with their state change, claimed by the relay."""

from __future__ import annotations

import functools
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from common.pruning import delete_where
from order_service.tables import outbox


@dataclass(frozen=True)
class OutboxEvent:
    id: str
    event_type: str
    order_id: str
    payload: str
    request_id: str | None
    created_at: datetime
    # Sends SQS refused so far (see OutboxRelay): a new event has none.
    attempts: int = 0


_INSERT_OUTBOX_EVENT = outbox.insert()
_MARK_SENT = (
    outbox.update()
    .where(outbox.c.id.in_(sa.bindparam("event_ids", expanding=True)))
    .values(sent_at=sa.bindparam("now"))
)


@functools.cache
def _claim_unsent_statement(limit: int) -> sa.Select[tuple[object, ...]]:
    """The relay's claim, built once for its batch size."""
    return (
        sa.select(outbox)
        .where(outbox.c.sent_at.is_(None), outbox.c.parked_at.is_(None))
        .order_by(outbox.c.id)
        .limit(limit)
        .with_for_update(skip_locked=True)
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
        return [_event(row) for row in self._db.execute(_claim_unsent_statement(limit))]

    def count_refusals(
        self, refused: Sequence[OutboxEvent], now: datetime, *, max_attempts: int
    ) -> list[OutboxEvent]:
        """Counts one more refusal of each claimed event, and parks those that reach
        `max_attempts`; returns the parked ones."""
        ids = [event.id for event in refused]
        self._db.execute(
            outbox.update().where(outbox.c.id.in_(ids)).values(attempts=outbox.c.attempts + 1)
        )
        parked = [event for event in refused if event.attempts + 1 >= max_attempts]
        if parked:
            self._db.execute(
                outbox.update()
                .where(outbox.c.id.in_([event.id for event in parked]))
                .values(parked_at=now)
            )
        return parked

    def mark_sent(self, event_ids: Sequence[str], now: datetime) -> None:
        if event_ids:
            self._db.execute(_MARK_SENT, {"event_ids": list(event_ids), "now": now})

    def delete_sent_before(self, cutoff: datetime, limit: int) -> int:
        """Keeps the table bounded; in slices, so no long lock is ever held."""
        return delete_where(self._db, outbox, outbox.c.sent_at < cutoff, limit)

    def parked(self, limit: int) -> list[tuple[OutboxEvent, datetime]]:
        """The events parked first, each with when it was parked."""
        query = (
            sa.select(outbox)
            .where(outbox.c.sent_at.is_(None), outbox.c.parked_at.is_not(None))
            .order_by(outbox.c.parked_at, outbox.c.id)
            .limit(limit)
        )
        return [(_event(row), row.parked_at) for row in self._db.execute(query)]

    def status(self) -> tuple[int, datetime | None, datetime | None, int]:
        """(unsent count, oldest unsent created_at, latest sent_at, parked count); min and max
        keep the column's type, so the datetimes come back UTC-aware. Parked events are
        unsent too, but counted apart: the relay no longer tries them."""
        pending, oldest = self._db.execute(
            sa.select(sa.func.count(), sa.func.min(outbox.c.created_at)).where(
                outbox.c.sent_at.is_(None), outbox.c.parked_at.is_(None)
            )
        ).one()
        parked = self._db.execute(
            sa.select(sa.func.count()).where(
                outbox.c.sent_at.is_(None), outbox.c.parked_at.is_not(None)
            )
        ).scalar_one()
        last_sent = self._db.execute(sa.select(sa.func.max(outbox.c.sent_at))).scalar()
        return int(pending), oldest, last_sent, int(parked)


def _event(row: sa.Row[tuple[object, ...]]) -> OutboxEvent:
    return OutboxEvent(
        row.id,
        row.event_type,
        row.order_id,
        row.payload,
        row.request_id,
        row.created_at,
        int(row.attempts),
    )
