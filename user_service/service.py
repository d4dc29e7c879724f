"""User use cases: register, look up, log in (rate limited), and ensure configured accounts."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

from argon2 import PasswordHasher, Type
from argon2.exceptions import InvalidHashError, VerificationError
from sqlalchemy.exc import IntegrityError

from common.auth import ADMIN, CUSTOMER, SERVICE, Principal, require_own_account
from common.db import Database, utcnow
from common.errors import Conflict, NotFound, TooManyRequests, Unauthorized
from common.ids import new_id
from user_service.repository import LoginFailureRepository, User, UserRepository, login_key
from user_service.settings import UserSettings
from user_service.tokens import TokenSigner

Clock = Callable[[], datetime]
INVALID_CREDENTIALS = "Invalid username or password."


@dataclass(frozen=True)
class IssuedToken:
    access_token: str
    expires_in: int


def password_hasher(settings: UserSettings) -> PasswordHasher:
    return PasswordHasher(
        time_cost=settings.argon2_time_cost,
        memory_cost=settings.argon2_memory_kib,
        parallelism=settings.argon2_parallelism,
        type=Type.ID,
    )


def password_matches(hasher: PasswordHasher, password_hash: str, password: str) -> bool:
    """Callers bound `password`'s length first: argon2 hashes whatever it is given."""
    try:
        return bool(hasher.verify(password_hash, password))
    except (VerificationError, InvalidHashError):
        return False


class UserService:
    def __init__(
        self,
        db: Database,
        settings: UserSettings,
        signer: TokenSigner,
        *,
        clock: Clock = utcnow,
    ) -> None:
        self._db = db
        self._settings = settings
        self._signer = signer
        self._hasher = password_hasher(settings)
        self._clock = clock
        # Unknown usernames are checked against this, so they cost as much as a wrong password.
        self._decoy_hash = self._hasher.hash(new_id())

    def register(self, username: str, email: str, password: str, phone: str | None = None) -> User:
        return self._create(username, email, password, CUSTOMER, phone)

    def get_user(self, user_id: str, principal: Principal) -> User:
        require_own_account(principal, user_id)
        with self._db.transaction() as connection:
            user = UserRepository(connection).get(user_id)
        if user is None:
            raise NotFound("No such user.")
        return user

    def login(self, identifier: str, password: str) -> IssuedToken:
        key, now = login_key(identifier), self._clock()
        window_start = now - timedelta(seconds=self._settings.login_failure_window_s)
        with self._db.transaction() as connection:
            failures = LoginFailureRepository(connection).recent(key, window_start)
            user = UserRepository(connection).by_login(identifier)
        self._refuse_if_locked_out(failures, now)
        # Hashing is slow on purpose; no transaction is held open across it.
        verified = self._verify(user.password_hash if user else self._decoy_hash, password)
        with self._db.transaction() as connection:
            failures_repo = LoginFailureRepository(connection)
            if user is None or not verified:
                failures_repo.record(key, now)
                failures_repo.forget(key, before=window_start)
            else:
                failures_repo.forget(key)
                self._upgrade_hash_if_stale(UserRepository(connection), user, password, now)
        if user is None or not verified:
            raise Unauthorized(INVALID_CREDENTIALS)
        token = self._signer.issue(subject=user.id, role=user.role, now=now)
        return IssuedToken(access_token=token, expires_in=self._signer.ttl_s)

    def ensure_account(self, username: str, password: str, role: str) -> User:
        """Create the account, or bring an existing one's password and role in line."""
        if role not in {ADMIN, SERVICE, CUSTOMER}:
            raise ValueError(f"unknown role {role!r}")
        with self._db.transaction() as connection:
            existing = UserRepository(connection).by_username(username)
        if existing is None:
            try:
                return self._create(
                    username, f"{username.lower()}@accounts.shop.invalid", password, role
                )
            except Conflict:
                # Replicas starting together each ensure the same account; one creates it.
                with self._db.transaction() as connection:
                    existing = UserRepository(connection).by_username(username)
                if existing is None:
                    raise
        if existing.role != role or not self._verify(existing.password_hash, password):
            with self._db.transaction() as connection:
                UserRepository(connection).update_credentials(
                    existing.id,
                    password_hash=self._hasher.hash(password),
                    role=role,
                    now=self._clock(),
                )
        return existing

    def _create(
        self, username: str, email: str, password: str, role: str, phone: str | None = None
    ) -> User:
        now = self._clock()
        user = User(new_id(), username, email, self._hasher.hash(password), role, now, now, phone)
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

    def _refuse_if_locked_out(self, failures: list[datetime], now: datetime) -> None:
        limit = self._settings.login_max_failures
        if len(failures) < limit:
            return
        # Logins reopen when the oldest of the last `limit` failures leaves the window.
        reopens_at = failures[-limit] + timedelta(seconds=self._settings.login_failure_window_s)
        raise TooManyRequests(
            "Too many failed logins; try again later.",
            retry_after_s=math.ceil((reopens_at - now).total_seconds()),
        )

    def _verify(self, password_hash: str, password: str) -> bool:
        return password_matches(self._hasher, password_hash, password)

    def _upgrade_hash_if_stale(
        self, users: UserRepository, user: User, password: str, now: datetime
    ) -> None:
        if self._hasher.check_needs_rehash(user.password_hash):
            users.update_credentials(
                user.id, password_hash=self._hasher.hash(password), role=user.role, now=now
            )
