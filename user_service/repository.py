"""The users table and its SQL (the throttles' live in throttle_repository)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from common.db import UtcDateTime
from user_service.phones import E164_MAX_LENGTH

metadata = sa.MetaData()

users = sa.Table(
    "users",
    metadata,
    sa.Column("id", sa.String(36), primary_key=True),
    # Username, email, phone and password hash are NULL once the account is closed (the
    # personal data is erased, the id stays): NULLs never collide in a unique index, so the
    # name and address are free again and any number of closed accounts coexist.
    sa.Column("username", sa.String(50)),
    # Lower-cased copies carry the uniqueness, so "Alice" and "alice" are one account on
    # every database, whatever its collation.
    sa.Column("username_key", sa.String(50), unique=True),
    sa.Column("email", sa.String(254)),
    sa.Column("email_key", sa.String(254), unique=True),
    sa.Column("password_hash", sa.String(255)),
    sa.Column("role", sa.String(16), nullable=False),
    sa.Column("created_at", UtcDateTime(), nullable=False),
    sa.Column("updated_at", UtcDateTime(), nullable=False),
    sa.Column("phone", sa.String(E164_MAX_LENGTH)),
    sa.Column("closed_at", UtcDateTime()),
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
    phone: str | None = None


@dataclass(frozen=True)
class ProfileChanges:
    """What an edit of the account sets; None leaves a field as it is (`clear_phone` erases)."""

    email: str | None = None
    phone: str | None = None
    clear_phone: bool = False
    password_hash: str | None = None

    def is_empty(self) -> bool:
        changed = (self.email, self.phone, self.password_hash)
        return all(value is None for value in changed) and not self.clear_phone


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
                phone=user.phone,
            )
        )

    def get(self, user_id: str) -> User | None:
        """The open account with this id; a closed one is as absent as an unknown one."""
        return self._one(users.c.id == user_id)

    def lock(self, user_id: str) -> User | None:
        """The open account, its row locked to the end of the transaction: whatever else
        locks it (closing, adding an address) waits, so each sees the other's outcome."""
        row = self._db.execute(
            sa.select(*_USER_COLUMNS).where(users.c.id == user_id, _is_open).with_for_update()
        ).first()
        return None if row is None else User(*row)

    def is_open(self, user_id: str) -> bool:
        found = self._db.execute(sa.select(users.c.id).where(users.c.id == user_id, _is_open))
        return found.first() is not None

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

    def update_profile(
        self, user_id: str, changes: ProfileChanges, *, now: datetime, verified_hash: str | None
    ) -> bool:
        """Applies the changes to the open account; with `verified_hash`, only while the
        password is still the one the caller verified. False when no row qualified."""
        values: dict[str, object] = {"updated_at": now}
        if changes.email is not None:
            values.update(email=changes.email, email_key=login_key(changes.email))
        if changes.phone is not None or changes.clear_phone:
            values["phone"] = changes.phone
        if changes.password_hash is not None:
            values["password_hash"] = changes.password_hash
        condition = sa.and_(users.c.id == user_id, _is_open)
        if verified_hash is not None:
            condition = sa.and_(condition, users.c.password_hash == verified_hash)
        return self._db.execute(users.update().where(condition).values(**values)).rowcount == 1

    def erase(self, user_id: str, *, now: datetime) -> None:
        """Closes the account: every personal field is erased, the id and role stay."""
        self._db.execute(
            users.update()
            .where(users.c.id == user_id)
            .values(
                username=None,
                username_key=None,
                email=None,
                email_key=None,
                phone=None,
                password_hash=None,
                closed_at=now,
                updated_at=now,
            )
        )

    def _one(self, condition: sa.ColumnElement[bool]) -> User | None:
        # Every lookup (by id, name, email or login) finds open accounts only: a closed one
        # cannot log in, be read or be ensured, whatever its erased keys would match.
        row = self._db.execute(sa.select(*_USER_COLUMNS).where(condition, _is_open)).first()
        return None if row is None else User(*row)


_is_open = users.c.closed_at.is_(None)

_USER_COLUMNS = (
    users.c.id,
    users.c.username,
    users.c.email,
    users.c.password_hash,
    users.c.role,
    users.c.created_at,
    users.c.updated_at,
    users.c.phone,
)
