"""The login failures table and its SQL."""

from __future__ import annotations

from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from common.db import UtcDateTime
from user_service.repository import metadata

# One row per failed login. Counting rows in a window is race-free across workers and
# replicas without any upsert, and old rows are pruned as new ones arrive.
login_failures = sa.Table(
    "login_failures",
    metadata,
    sa.Column("id", sa.BigInteger().with_variant(sa.Integer, "sqlite"), primary_key=True),
    sa.Column("login_key", sa.String(254), nullable=False),
    sa.Column("failed_at", UtcDateTime(), nullable=False),
    sa.Index("ix_login_failures_key_time", "login_key", "failed_at"),
)


class LoginFailureRepository:
    def __init__(self, connection: Connection) -> None:
        self._db = connection

    def recent(self, key: str, since: datetime) -> list[datetime]:
        rows = self._db.execute(
            sa.select(login_failures.c.failed_at)
            .where(login_failures.c.login_key == key, login_failures.c.failed_at > since)
            .order_by(login_failures.c.failed_at)
        )
        return [row.failed_at for row in rows]

    def record(self, key: str, at: datetime) -> None:
        self._db.execute(login_failures.insert().values(login_key=key, failed_at=at))

    def forget(self, key: str, *, before: datetime | None = None) -> None:
        condition = login_failures.c.login_key == key
        if before is not None:
            condition = sa.and_(condition, login_failures.c.failed_at <= before)
        self._db.execute(login_failures.delete().where(condition))
