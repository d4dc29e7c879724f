"""The users table and its SQL (the login throttle's lives in login_repository)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from common.db import UtcDateTime

metadata = sa.MetaData()

users = sa.Table(
    "users",
    metadata,
    sa.Column("id", sa.String(36), primary_key=True),
    sa.Column("username", sa.String(50), nullable=False),
    # Lower-cased copies carry the uniqueness, so "Alice" and "alice" are one account on
    # every database, whatever its collation.
    sa.Column("username_key", sa.String(50), nullable=False, unique=True),
    sa.Column("email", sa.String(254), nullable=False),
    sa.Column("email_key", sa.String(254), nullable=False, unique=True),
    sa.Column("password_hash", sa.String(255), nullable=False),
    sa.Column("role", sa.String(16), nullable=False),
    sa.Column("created_at", UtcDateTime(), nullable=False),
    sa.Column("updated_at", UtcDateTime(), nullable=False),
)


@dataclass(frozen=True)
class User:
    id: str
    username: str
    email: str
    password_hash: str
    role: str
    created_at: datetime
    updated_at: datetime


def login_key(identifier: str) -> str:
    return identifier.strip().lower()


class UserRepository:
    def __init__(self, connection: Connection) -> None:
        self._db = connection

    def add(self, user: User) -> None:
        self._db.execute(
            users.insert().values(
                id=user.id,
                username=user.username,
                username_key=login_key(user.username),
                email=user.email,
                email_key=login_key(user.email),
                password_hash=user.password_hash,
                role=user.role,
                created_at=user.created_at,
                updated_at=user.updated_at,
            )
        )

    def get(self, user_id: str) -> User | None:
        return self._one(users.c.id == user_id)

    def by_username(self, username: str) -> User | None:
        return self._one(users.c.username_key == login_key(username))

    def by_email(self, email: str) -> User | None:
        return self._one(users.c.email_key == login_key(email))

    def by_login(self, identifier: str) -> User | None:
        key = login_key(identifier)
        return self._one(sa.or_(users.c.username_key == key, users.c.email_key == key))

    def update_credentials(
        self, user_id: str, *, password_hash: str, role: str, now: datetime
    ) -> None:
        self._db.execute(
            users.update()
            .where(users.c.id == user_id)
            .values(password_hash=password_hash, role=role, updated_at=now)
        )

    def _one(self, condition: sa.ColumnElement[bool]) -> User | None:
        row = self._db.execute(sa.select(*_USER_COLUMNS).where(condition)).first()
        return None if row is None else User(*row)


_USER_COLUMNS = (
    users.c.id,
    users.c.username,
    users.c.email,
    users.c.password_hash,
    users.c.role,
    users.c.created_at,
    users.c.updated_at,
)
