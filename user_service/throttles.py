"""Throttles: attempts counted per key (an account, a client address) in a fixed window, in
the user database so every worker and replica shares them. Each attempt is charged in one
atomic statement before the work it guards (a password hash), so parallel attempts are each
counted: no more than the policy's `max_attempts` in a window ever get through. After
`slowdown_after` of them each further attempt must wait a pause that doubles with every
attempt (one that comes sooner is refused and not counted), and the last one allowed pauses
the key until its window ends.
"""

from __future__ import annotations

import hashlib
import ipaddress
import math
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta

from common.db import Database, retry_on_deadlock
from common.errors import ServiceUnavailable, TooManyRequests
from user_service.throttle_repository import Charge, ThrottleRepository

# Expired throttles deleted by each attempt that opens a window (a new row, at most one). With
# more than one taken away per row added, expired rows never pile up, whatever the rate of
# random keys: the table holds the windows still open plus at most a batch.
PRUNE_PER_NEW_WINDOW = 10


@dataclass(frozen=True)
class ThrottlePolicy:
    max_attempts: int
    window: timedelta
    # Attempts in a window before pauses begin; at max_attempts or more, none do.
    slowdown_after: int
    first_pause_s: float
    # What is counted, for the 429's detail: "failed logins", say.
    counted: str


@dataclass(frozen=True)
class Attempt:
    """An attempt a throttle let in: what a refund needs to take back exactly it."""

    key: str
    attempt_id: str
    window_ends_at: datetime


def hashed_key(subject: str) -> str:
    """A throttle's key: fixed width, and never what a client typed."""
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


class Throttle:
    """Attempts per throttle key in a fixed window from the first attempt."""

    def __init__(self, db: Database, policy: ThrottlePolicy) -> None:
        self._db = db
        self._policy = policy

    def charge(self, key: str, now: datetime) -> Attempt:
        """Counts this attempt, or raises TooManyRequests: the key's pause has not ended
        (nothing counted), or the window's attempts are used up."""
        attempt_id = uuid.uuid4().hex
        charge = self._count_attempt(key, now, attempt_id)
        if charge.opened_the_window:
            self.prune(now, at_most=PRUNE_PER_NEW_WINDOW)
        if not charge.admitted:
            assert charge.next_attempt_at is not None, "only a pause refuses an attempt"
            raise TooManyRequests(
                f"Too many {self._policy.counted}; wait before trying again.",
                retry_after_s=math.ceil((charge.next_attempt_at - now).total_seconds()),
            )
        if charge.attempts > self._policy.max_attempts:  # a row from before pauses existed
            raise TooManyRequests(
                f"Too many {self._policy.counted}; try again later.",
                retry_after_s=math.ceil((charge.window_ends_at - now).total_seconds()),
            )
        return Attempt(key, attempt_id, charge.window_ends_at)

    def _pause_after(
        self, attempts: int, now: datetime, window_ends_at: datetime
    ) -> datetime | None:
        """When the next attempt may come after this window's `attempts`th (a login's counts
        as failed unless it succeeds and clears the throttle): no pause for the first
        `slowdown_after`, then the first pause, doubled for each attempt beyond, and the
        window's end once `max_attempts` are used."""
        policy = self._policy
        if attempts >= policy.max_attempts:
            return window_ends_at
        beyond = attempts - policy.slowdown_after
        if beyond < 0:
            return None
        # In seconds, capped before it becomes a timedelta: no setting is too high to add.
        pause_s = min(policy.first_pause_s * 2.0 ** min(beyond, 64), policy.window.total_seconds())
        return min(now + timedelta(seconds=pause_s), window_ends_at)

    @contextmanager
    def refunded_if_unavailable(self, attempt: Attempt) -> Iterator[None]:
        """Runs the attempt's work (a hash); if no hashing turn was free (503), nothing was
        checked or made, so the attempt must not count: it is taken back, and the 503 goes
        on to the client."""
        try:
            yield
        except ServiceUnavailable:
            self.refund(attempt)
            raise

    def refund(self, attempt: Attempt) -> None:
        """Takes back an attempt whose work never ran."""
        with self._db.transaction() as connection:
            ThrottleRepository(connection).refund(
                attempt.key, attempt.attempt_id, attempt.window_ends_at
            )

    def clear(self, key: str) -> None:
        with self._db.transaction() as connection:
            ThrottleRepository(connection).clear(key)

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
            return ThrottleRepository(connection).delete_expired(now, at_most=at_most)

    # Concurrent upserts of one new key can deadlock on InnoDB's insert locks; the loser
    # simply runs again.
    @retry_on_deadlock
    def _count_attempt(self, key: str, now: datetime, attempt_id: str) -> Charge:
        """Charges the attempt and, if it was let in, sets the pause its failure would earn,
        in one transaction: the next attempt on any worker sees the pause."""
        with self._db.transaction() as connection:
            throttles = ThrottleRepository(connection)
            charge = throttles.charge(
                key,
                now=now,
                window_ends_if_new=now + self._policy.window,
                attempt_id=attempt_id,
            )
            if charge.admitted:
                until = self._pause_after(charge.attempts, now, charge.window_ends_at)
                if until is not None:
                    throttles.pause(key, until)
            return charge
