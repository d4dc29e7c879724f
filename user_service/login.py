"""Logging in: credentials for a token, with failed logins rate limited."""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime, timedelta

from common.db import Database, utcnow
from common.errors import TooManyRequests, Unauthorized
from common.ids import new_id
from user_service.login_repository import LoginFailureRepository
from user_service.passwords import Passwords
from user_service.repository import User, UserRepository, login_key
from user_service.service import Clock
from user_service.settings import UserSettings
from user_service.tokens import TokenSigner

INVALID_CREDENTIALS = "Invalid username or password."


@dataclass(frozen=True)
class IssuedToken:
    access_token: str
    expires_in: int


class LoginService:
    def __init__(
        self,
        db: Database,
        settings: UserSettings,
        passwords: Passwords,
        signer: TokenSigner,
        *,
        clock: Clock = utcnow,
    ) -> None:
        self._db = db
        self._settings = settings
        self._passwords = passwords
        self._signer = signer
        self._clock = clock
        # Unknown usernames are checked against this, so they cost as much as a wrong password.
        self._decoy_hash = passwords.hash(new_id())

    def login(self, identifier: str, password: str) -> IssuedToken:
        key, now = login_key(identifier), self._clock()
        window_start = now - timedelta(seconds=self._settings.login_failure_window_s)
        with self._db.transaction() as connection:
            failures = LoginFailureRepository(connection).recent(key, window_start)
            user = UserRepository(connection).by_login(identifier)
        self._refuse_if_locked_out(failures, now)
        # Hashing is slow on purpose; no transaction is held open across it.
        password_hash = user.password_hash if user else self._decoy_hash
        verified = self._passwords.verify(password_hash, password)
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

    def _upgrade_hash_if_stale(
        self, users: UserRepository, user: User, password: str, now: datetime
    ) -> None:
        if self._passwords.needs_rehash(user.password_hash):
            users.update_credentials(
                user.id, password_hash=self._passwords.hash(password), role=user.role, now=now
            )
