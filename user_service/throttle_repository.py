"""The throttles' table (named for its first use, logins; sign-ups share it) and its SQL."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.dialects import mysql, sqlite
from sqlalchemy.engine import Connection

from common.db import UtcDateTime
from user_service.repository import metadata

# One row per throttled thing (an account, an admin or service account from one client
# address, or the sign-ups from one address) with its attempts in the current window. The key
# is a SHA-256 of what it counts: fixed width, and a password typed into the username field is
# never stored.
login_throttles = sa.Table(
    "login_throttles",
    metadata,
    sa.Column("throttle_key", sa.String(64), primary_key=True),
    sa.Column("attempts", sa.Integer, nullable=False),
    sa.Column("window_ends_at", UtcDateTime(), nullable=False),
    # No attempt is let in before this (NULL: no pause); set after each failure that slows
    # the account down, and to the window's end once it is locked out.
    sa.Column("next_attempt_at", UtcDateTime(), nullable=True),
    # The last attempt let in: how a caller tells its own attempt from a refused one.
    sa.Column("last_attempt_id", sa.String(32), nullable=True),
    sa.Index("ix_login_throttles_window_ends_at", "window_ends_at"),
)


@dataclass(frozen=True)
class Charge:
    """A login attempt against a throttle. Admitted, it was counted (`attempts` includes it);
    refused, it came before `next_attempt_at` and changed nothing."""

    admitted: bool
    attempts: int
    window_ends_at: datetime
    next_attempt_at: datetime | None

    @property
    def opened_the_window(self) -> bool:
        return self.admitted and self.attempts == 1


class ThrottleRepository:
    def __init__(self, connection: Connection) -> None:
        self._db = connection

    def charge(
        self, key: str, *, now: datetime, window_ends_if_new: datetime, attempt_id: str
    ) -> Charge:
        """Counts one attempt in one statement (an upsert), unless the throttle's pause has not
        ended, so concurrent attempts on every worker and replica are each counted exactly
        once; a window that has ended starts again at 1. The caller's transaction holds the
        row until it commits, so the read back is this attempt's own: it was admitted if the
        row carries its `attempt_id`."""
        table = login_throttles
        ended = table.c.window_ends_at <= now
        paused = sa.and_(table.c.next_attempt_at.is_not(None), table.c.next_attempt_at > now)
        new_end = sa.literal(window_ends_if_new, UtcDateTime())
        # Order matters on MySQL, which evaluates SET left to right with the new values: the
        # conditions must read the old window end. (SQLite reads old values throughout.)
        assignments = [
            (
                "last_attempt_id",
                sa.case(
                    (sa.or_(ended, sa.not_(paused)), attempt_id), else_=table.c.last_attempt_id
                ),
            ),
            (
                "attempts",
                sa.case((ended, 1), (paused, table.c.attempts), else_=table.c.attempts + 1),
            ),
            ("window_ends_at", sa.case((ended, new_end), else_=table.c.window_ends_at)),
        ]
        values = {
            "throttle_key": key,
            "attempts": 1,
            "window_ends_at": window_ends_if_new,
            "last_attempt_id": attempt_id,
        }
        if self._db.dialect.name == "mysql":
            upsert = mysql.insert(table).values(values).on_duplicate_key_update(assignments)
            self._db.execute(upsert)
        else:
            statement = sqlite.insert(table).values(values)
            self._db.execute(
                statement.on_conflict_do_update(
                    index_elements=[table.c.throttle_key], set_=dict(assignments)
                )
            )
        row = self._db.execute(
            sa.select(
                table.c.attempts,
                table.c.window_ends_at,
                table.c.next_attempt_at,
                table.c.last_attempt_id,
            ).where(table.c.throttle_key == key)
        ).one()
        return Charge(
            admitted=row.last_attempt_id == attempt_id,
            attempts=row.attempts,
            window_ends_at=row.window_ends_at,
            next_attempt_at=row.next_attempt_at,
        )

    def pause(self, key: str, until: datetime) -> None:
        """No attempt is let in before `until`."""
        table = login_throttles
        self._db.execute(
            table.update().where(table.c.throttle_key == key).values(next_attempt_at=until)
        )

    def refund(self, key: str, attempt_id: str, window_ends_at: datetime) -> None:
        """Takes back an admitted attempt that was never checked (no hashing turn was free),
        if its window is still the current one; and the pause it set, unless a later attempt
        has been let in since (whose pause stands)."""
        table = login_throttles
        own_pause_ends = sa.case(
            (table.c.last_attempt_id == attempt_id, sa.null()), else_=table.c.next_attempt_at
        )
        self._db.execute(
            table.update()
            .where(
                table.c.throttle_key == key,
                table.c.window_ends_at == window_ends_at,
                table.c.attempts > 0,
            )
            .values(attempts=table.c.attempts - 1, next_attempt_at=own_pause_ends)
        )

    def clear(self, key: str) -> None:
        self._db.execute(login_throttles.delete().where(login_throttles.c.throttle_key == key))

    def delete_expired(self, now: datetime, *, at_most: int) -> int:
        """Deletes up to `at_most` throttles whose window has ended (oldest first); how many.
        Two statements because neither MySQL nor SQLite takes a portable DELETE ... LIMIT."""
        table = login_throttles
        expired = table.c.window_ends_at < now
        keys = list(
            self._db.scalars(
                sa.select(table.c.throttle_key)
                .where(expired)
                .order_by(table.c.window_ends_at)
                .limit(at_most)
            )
        )
        if not keys:
            return 0
        # Sorted, so concurrent prunes lock the same rows in the same order; the condition is
        # checked again, so a key charged again meanwhile (a new window) is kept.
        result = self._db.execute(
            table.delete().where(table.c.throttle_key.in_(sorted(keys)), expired)
        )
        return result.rowcount
