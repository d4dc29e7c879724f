"""Logging in: credentials for a token, with login attempts throttled.

Every attempt is charged to its throttle before the password is hashed, in one atomic
statement, and a success clears it: parallel guesses are each counted, so no more than
LOGIN_MAX_FAILURES of them in a window are ever checked. The failures slow the account down
first: after LOGIN_SLOWDOWN_AFTER of them, each further attempt must wait a pause that doubles
with every failure (an attempt that comes sooner is refused and not counted), and the
LOGIN_MAX_FAILURES-th failure pauses it until the window ends. A throttle is per account (the user
id, whichever name the client typed; the typed name for an unknown one), except for admin and
service accounts, throttled per account and client address: an anonymous client can then
lock out only its own address, never the order service or the admin.
"""

from __future__ import annotations

import hashlib
import ipaddress
import math
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta

from common.auth import ADMIN, SERVICE
from common.db import Database, retry_on_deadlock, utcnow
from common.errors import ServiceUnavailable, TooManyRequests, Unauthorized
from common.ids import new_id
from user_service.login_repository import Charge, LoginThrottleRepository
from user_service.passwords import Passwords
from user_service.repository import User, UserRepository, login_key
from user_service.service import Clock
from user_service.settings import UserSettings
from user_service.tokens import TokenSigner

INVALID_CREDENTIALS = "Invalid username or password."
# Accounts the system needs: never locked by anonymous clients, hashed in reserved turns.
PRIVILEGED_ROLES = frozenset({ADMIN, SERVICE})
# Expired throttles deleted by each attempt that opens a window (a new row, at most one). With
# more than one taken away per row added, expired rows never pile up, whatever the rate of
# random usernames: the table holds the windows still open plus at most a batch.
PRUNE_PER_NEW_WINDOW = 10


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
    return hashlib.sha256(subject.encode()).hexdigest()


def client_block(address: str | None) -> str:
    """The address block one client controls: an IPv4 address, or an IPv6 /64 (a host is
    commonly handed a whole /64, so single IPv6 addresses would give it 2^64 throttles)."""
    try:
        ip = ipaddress.ip_address(address or "")
    except ValueError:
        return address or "unknown"
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:
            return str(ip.ipv4_mapped)
        return str(ipaddress.ip_network(f"{ip.exploded}/64", strict=False))
    return str(ip)


class LoginThrottle:
    """Login attempts per throttle key in a fixed window from the first attempt."""

    def __init__(self, db: Database, settings: UserSettings) -> None:
        self._db = db
        self._limit = settings.login_max_failures
        self._window = timedelta(seconds=settings.login_failure_window_s)
        self._slowdown_after = settings.login_slowdown_after
        self._first_pause_s = settings.login_slowdown_first_pause_s

    def charge(self, key: str, now: datetime) -> None:
        """Counts this attempt, or raises TooManyRequests: the account's pause has not ended
        (nothing counted), or the window's attempts are used up."""
        charge = self._count_attempt(key, now)
        if charge.opened_the_window:
            self.prune(now, at_most=PRUNE_PER_NEW_WINDOW)
        if not charge.admitted:
            assert charge.next_attempt_at is not None, "only a pause refuses an attempt"
            raise TooManyRequests(
                "Too many failed logins; wait before trying again.",
                retry_after_s=math.ceil((charge.next_attempt_at - now).total_seconds()),
            )
        if charge.attempts > self._limit:  # a row from before pauses existed
            raise TooManyRequests(
                "Too many failed logins; try again later.",
                retry_after_s=math.ceil((charge.window_ends_at - now).total_seconds()),
            )

    def _pause_after(
        self, failures: int, now: datetime, window_ends_at: datetime
    ) -> datetime | None:
        """When the next attempt may come, counting this one as failed (it is, unless it
        succeeds and clears the throttle): no pause for the first LOGIN_SLOWDOWN_AFTER, then
        the first pause, doubled for each failure beyond, and the window's end at the limit."""
        if failures >= self._limit:
            return window_ends_at
        beyond = failures - self._slowdown_after
        if beyond < 0:
            return None
        # In seconds, capped before it becomes a timedelta: no limit is set too high to add.
        pause_s = min(self._first_pause_s * 2.0 ** min(beyond, 64), self._window.total_seconds())
        return min(now + timedelta(seconds=pause_s), window_ends_at)

    def refund(self, key: str) -> None:
        with self._db.transaction() as connection:
            LoginThrottleRepository(connection).refund(key)

    def clear(self, key: str) -> None:
        with self._db.transaction() as connection:
            LoginThrottleRepository(connection).clear(key)

    def prune_all(self, now: datetime, *, batch: int = 1000) -> int:
        """Deletes every throttle whose window ended before `now`, a batch per transaction."""
        deleted = 0
        while (pruned := self.prune(now, at_most=batch)) == batch:
            deleted += pruned
        return deleted + pruned

    @retry_on_deadlock
    def prune(self, now: datetime, *, at_most: int) -> int:
        """Deletes up to `at_most` throttles whose window has ended; how many it deleted."""
        with self._db.transaction() as connection:
            return LoginThrottleRepository(connection).delete_expired(now, at_most=at_most)

    # Concurrent upserts of one new key can deadlock on InnoDB's insert locks; the loser
    # simply runs again.
    @retry_on_deadlock
    def _count_attempt(self, key: str, now: datetime) -> Charge:
        """Charges the attempt and, if it was let in, sets the pause its failure would earn,
        in one transaction: the next attempt on any worker sees the pause."""
        with self._db.transaction() as connection:
            throttles = LoginThrottleRepository(connection)
            charge = throttles.charge(
                key, now=now, window_ends_if_new=now + self._window, attempt_id=uuid.uuid4().hex
            )
            if charge.admitted:
                until = self._pause_after(charge.attempts, now, charge.window_ends_at)
                if until is not None:
                    throttles.pause(key, until)
            return charge


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
        self._throttle = LoginThrottle(db, settings)
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
        self._throttle.charge(key, now)
        # Hashing is slow on purpose; no transaction is held open across it.
        verified = self._check_password(key, user, password)
        if verified is None:
            raise Unauthorized(INVALID_CREDENTIALS)
        user = verified
        self._throttle.clear(key)
        self._upgrade_hash_if_stale(user, password, now)
        token = self._signer.issue(subject=user.id, role=user.role, now=now)
        return IssuedToken(access_token=token, expires_in=self._signer.ttl_s)

    def _check_password(self, key: str, user: User | None, password: str) -> User | None:
        """The user if the password is theirs; an unknown user costs the same hash."""
        try:
            if user is None:
                matches = self._passwords.verify(self._decoy_hash, password)
            else:
                privileged = user.role in PRIVILEGED_ROLES
                matches = self._passwords.verify(user.password_hash, password, reserved=privileged)
        except ServiceUnavailable:
            # Nothing was checked: the attempt must not count towards a lock-out.
            self._throttle.refund(key)
            raise
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
