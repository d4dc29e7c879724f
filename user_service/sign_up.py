"""Signing up: a new customer account, with sign-ups throttled per client address.

Each sign-up costs a password hash and leaves a row, so without a bound one client could fill
the users table at the hashing rate. The sign-ups from one address block (an IPv4 address, an
IPv6 /64) are charged to a throttle before the hash: at most SIGNUP_MAX_PER_ADDRESS in a
window of SIGNUP_WINDOW_S, then 429 until the window ends.
"""

from __future__ import annotations

from datetime import timedelta

from common.db import Database, utcnow
from user_service.repository import User
from user_service.service import Clock, UserService
from user_service.settings import UserSettings
from user_service.throttles import Throttle, ThrottlePolicy, client_block, hashed_key


def sign_up_throttle(db: Database, settings: UserSettings) -> Throttle:
    return Throttle(
        db,
        ThrottlePolicy(
            max_attempts=settings.signup_max_per_address,
            window=timedelta(seconds=settings.signup_window_s),
            # No pauses before the limit: sign-ups from one office or household come in bursts.
            slowdown_after=settings.signup_max_per_address,
            first_pause_s=1.0,
            counted="sign-ups from this address",
        ),
    )


class SignUp:
    def __init__(self, users: UserService, throttle: Throttle, *, clock: Clock = utcnow) -> None:
        self._users = users
        self._throttle = throttle
        self._clock = clock

    def register(
        self,
        username: str,
        email: str,
        password: str,
        phone: str | None,
        client_address: str | None,
    ) -> User:
        key = hashed_key(f"sign-up from {client_block(client_address)}")
        attempt = self._throttle.charge(key, self._clock())
        with self._throttle.refunded_if_unavailable(attempt):
            return self._users.register(username, email, password, phone)
