"""User use cases: register, look up, and ensure configured accounts (logging in: login.py)."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime

import structlog
from sqlalchemy.exc import IntegrityError

from common.auth import ADMIN, CUSTOMER, SERVICE, Principal, require_own_account
from common.db import Database, utcnow
from common.errors import Conflict, NotFound
from common.ids import new_id
from user_service.passwords import Passwords
from user_service.repository import User, UserRepository

log = structlog.get_logger(__name__)

Clock = Callable[[], datetime]
# Configured (admin and service) accounts get a placeholder address here; public sign-up may
# not take one (.invalid never resolves, RFC 2606), so it can never block creating them.
CONFIGURED_ACCOUNTS_DOMAIN = "accounts.shop.invalid"


def is_reserved_email(email: str) -> bool:
    domain = email.rpartition("@")[2].lower()
    return domain == CONFIGURED_ACCOUNTS_DOMAIN or domain.endswith(f".{CONFIGURED_ACCOUNTS_DOMAIN}")


class UserService:
    def __init__(self, db: Database, passwords: Passwords, *, clock: Clock = utcnow) -> None:
        self._db = db
        self._passwords = passwords
        self._clock = clock

    def register(self, username: str, email: str, password: str, phone: str | None = None) -> User:
        return self._create(username, email, password, CUSTOMER, phone)

    def get_user(self, user_id: str, principal: Principal) -> User:
        require_own_account(principal, user_id)
        with self._db.transaction() as connection:
            user = UserRepository(connection).get(user_id)
        if user is None:
            raise NotFound("No such user.")
        return user

    def ensure_account(self, username: str, password: str, role: str) -> User:
        """Create the account, or bring an existing one's password and role in line."""
        if role not in {ADMIN, SERVICE, CUSTOMER}:
            raise ValueError(f"unknown role {role!r}")
        with self._db.transaction() as connection:
            existing = UserRepository(connection).by_username(username)
        if existing is None:
            try:
                email = self._configured_account_email(username)
                return self._create(username, email, password, role)
            except Conflict:
                # Replicas starting together each ensure the same account; one creates it.
                with self._db.transaction() as connection:
                    existing = UserRepository(connection).by_username(username)
                if existing is None:
                    raise
        if existing.role != role or not self._passwords.verify(existing.password_hash, password):
            password_hash = self._passwords.hash(password)  # before the transaction: it is slow
            with self._db.transaction() as connection:
                UserRepository(connection).update_credentials(
                    existing.id, password_hash=password_hash, role=role, now=self._clock()
                )
        return existing

    def _configured_account_email(self, username: str) -> str:
        """`<name>@accounts.shop.invalid`, or a variant of it if another account already holds
        that (one that signed up before the domain was reserved). That account keeps it: it is
        the holder's address as far as the shop knows, and nobody ever mails a placeholder,
        while refusing here would stop `prestart`, and so every pod, until someone intervened."""
        email = f"{username.lower()}@{CONFIGURED_ACCOUNTS_DOMAIN}"
        with self._db.transaction() as connection:
            holder = UserRepository(connection).by_email(email)
        if holder is None:
            return email
        log.warning("configured_account_email_taken", username=username, holder=holder.id)
        return f"{username.lower()}+{new_id()[:8]}@{CONFIGURED_ACCOUNTS_DOMAIN}"

    def _create(
        self, username: str, email: str, password: str, role: str, phone: str | None = None
    ) -> User:
        now = self._clock()
        password_hash = self._passwords.hash(password)
        user = User(new_id(), username, email, password_hash, role, now, now, phone)
        try:
            with self._db.transaction() as connection:
                users = UserRepository(connection)
                self._refuse_if_taken(users, username, email)
                users.add(user)
        except IntegrityError as exc:
            # A concurrent registration won the race for the same name or email.
            with self._db.transaction() as connection:
                self._refuse_if_taken(UserRepository(connection), username, email)
            raise Conflict("The username or email is already taken.") from exc
        return user

    @staticmethod
    def _refuse_if_taken(users: UserRepository, username: str, email: str) -> None:
        if users.by_username(username) is not None:
            raise Conflict("The username is already taken.", extra={"field": "username"})
        if users.by_email(email) is not None:
            raise Conflict("The email is already registered.", extra={"field": "email"})
