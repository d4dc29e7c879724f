"""Logging in: credentials for a token, with login attempts throttled.

Every attempt is charged to its throttle (user_service.throttles) before the password is
hashed, and a success clears it: no more than LOGIN_MAX_FAILURES guesses in a window are ever
checked, and after LOGIN_SLOWDOWN_AFTER failures each further attempt waits a doubling pause.
A throttle is per account (the user id, whichever name the client typed; the typed name for an
unknown one), except for admin and service accounts, throttled per account and client address:
an anonymous client can then lock out only its own address, never the order service or the
admin.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from common.auth import ADMIN, SERVICE
from common.db import Database, utcnow
from common.errors import ServiceUnavailable, Unauthorized
from common.ids import new_id
from user_service.passwords import Passwords
from user_service.repository import User, UserRepository, login_key
from user_service.service import Clock
from user_service.settings import UserSettings
from user_service.throttles import Attempt, Throttle, ThrottlePolicy, client_block, hashed_key
from user_service.tokens import TokenSigner

INVALID_CREDENTIALS = "Invalid username or password."
# Accounts the system needs: never locked by anonymous clients, hashed in reserved turns.
PRIVILEGED_ROLES = frozenset({ADMIN, SERVICE})


@dataclass(frozen=True)
class IssuedToken:
    access_token: str
    expires_in: int


def throttle_key(identifier: str, user: User | None, client_address: str | None) -> str:
    """What one login attempt is counted against, hashed to a fixed width."""
    if user is None:
        subject = f"name {login_key(identifier)}"
    elif user.role in PRIVILEGED_ROLES:
        subject = f"user {user.id} from {client_block(client_address)}"
    else:
        subject = f"user {user.id}"
    return hashed_key(subject)


def login_throttle(db: Database, settings: UserSettings) -> Throttle:
    """The throttle failed logins (and wrong current passwords) are counted by."""
    return Throttle(
        db,
        ThrottlePolicy(
            max_attempts=settings.login_max_failures,
            window=timedelta(seconds=settings.login_failure_window_s),
            slowdown_after=settings.login_slowdown_after,
            first_pause_s=settings.login_slowdown_first_pause_s,
            counted="failed logins",
        ),
    )


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
        self._throttle = login_throttle(db, settings)
        self._passwords = passwords
        self._signer = signer
        self._clock = clock
        # Unknown usernames are checked against this, so they cost as much as a wrong password.
        self._decoy_hash = passwords.hash(new_id())

    def login(self, identifier: str, password: str, client_address: str | None) -> IssuedToken:
        now = self._clock()
        with self._db.transaction() as connection:
            user = UserRepository(connection).by_login(identifier)
        key = throttle_key(identifier, user, client_address)
        attempt = self._throttle.charge(key, now)
        # Hashing is slow on purpose; no transaction is held open across it.
        verified = self._check_password(attempt, user, password)
        if verified is None:
            raise Unauthorized(INVALID_CREDENTIALS)
        user = verified
        self._throttle.clear(key)
        self._upgrade_hash_if_stale(user, password, now)
        token = self._signer.issue(subject=user.id, role=user.role, now=now)
        return IssuedToken(access_token=token, expires_in=self._signer.ttl_s)

    def _check_password(self, attempt: Attempt, user: User | None, password: str) -> User | None:
        """The user if the password is theirs; an unknown user costs the same hash."""
        with self._throttle.refunded_if_unavailable(attempt):
            if user is None:
                matches = self._passwords.verify(self._decoy_hash, password)
            else:
                privileged = user.role in PRIVILEGED_ROLES
                matches = self._passwords.verify(user.password_hash, password, reserved=privileged)
        return user if matches else None

    def _upgrade_hash_if_stale(self, user: User, password: str, now: datetime) -> None:
        if not self._passwords.needs_rehash(user.password_hash):
            return
        try:
            password_hash = self._passwords.hash(password)
        except ServiceUnavailable:
            return  # every turn is taken: a later login upgrades it rather than this one fail
        with self._db.transaction() as connection:
            UserRepository(connection).update_credentials(
                user.id, password_hash=password_hash, role=user.role, now=now
            )
