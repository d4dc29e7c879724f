"""The login throttle's table and its SQL."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.dialects import mysql, sqlite
from sqlalchemy.engine import Connection

from common.db import UtcDateTime
from user_service.repository import metadata

# One row per throttled thing (an account, or an admin or service account from one client
# address) with its attempts in the current window. The key is a SHA-256 of what it counts:
# fixed width, and a password typed into the username field is never stored.
login_throttles = sa.Table(
    "login_throttles",
    metadata,
    sa.Column("throttle_key", sa.String(64), primary_key=True),
    sa.Column("attempts", sa.Integer, nullable=False),
    sa.Column("window_ends_at", UtcDateTime(), nullable=False),
    sa.Index("ix_login_throttles_window_ends_at", "window_ends_at"),
)


@dataclass(frozen=True)
class Charge:
    """A login attempt counted against a throttle: `attempts` includes this one."""

    attempts: int
    window_ends_at: datetime

    @property
    def opened_the_window(self) -> bool:
        return self.attempts == 1


class LoginThrottleRepository:
    def __init__(self, connection: Connection) -> None:
        self._db = connection

    def charge(self, key: str, *, now: datetime, window_ends_if_new: datetime) -> Charge:
        """Counts one attempt in one statement (an upsert), so concurrent attempts on every
        worker and replica are each counted exactly once; a window that has ended starts
        again at 1. The caller's transaction holds the row until it commits, so the read back
        is this attempt's own count."""
        table = login_throttles
        ended = table.c.window_ends_at <= now
        new_end = sa.literal(window_ends_if_new, UtcDateTime())
        # Order matters on MySQL, which evaluates SET left to right with the new values:
        # `attempts` must read the old window end. (SQLite reads old values throughout.)
        assignments = [
            ("attempts", sa.case((ended, 1), else_=table.c.attempts + 1)),
            ("window_ends_at", sa.case((ended, new_end), else_=table.c.window_ends_at)),
        ]
        values = {"throttle_key": key, "attempts": 1, "window_ends_at": window_ends_if_new}
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
            sa.select(table.c.attempts, table.c.window_ends_at).where(table.c.throttle_key == key)
        ).one()
        return Charge(row.attempts, row.window_ends_at)

    def refund(self, key: str) -> None:
        """Takes back an attempt that was never checked (no hashing turn was free)."""
        table = login_throttles
        self._db.execute(
            table.update()
            .where(table.c.throttle_key == key, table.c.attempts > 0)
            .values(attempts=table.c.attempts - 1)
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
