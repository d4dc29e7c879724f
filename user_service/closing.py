"""Closing an account: its personal data erased in one transaction, its id kept, its tokens
refused by this service at once.

The id stays (with `closed_at`) so past orders still resolve it. Access tokens are stateless
JWTs: the product and order services, which verify them with the public key alone, accept a
closed account's token until it expires (`ACCESS_TOKEN_TTL_S`, 15 minutes by default). The user
service holds the accounts, so it checks the token's account on every request instead.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime

from common.auth import KeySource, Principal, TokenVerifier, require_own_account
from common.db import Database, utcnow
from common.errors import NotFound, Unauthorized
from user_service.address_repository import AddressRepository
from user_service.repository import UserRepository


class AccountClosing:
    def __init__(self, db: Database, *, clock: Callable[[], datetime] = utcnow) -> None:
        self._db = db
        self._clock = clock

    def close_account(self, user_id: str, principal: Principal) -> None:
        require_own_account(principal, user_id)
        with self._db.transaction() as connection:
            users = UserRepository(connection)
            # Locked, so an address being added meanwhile waits and then finds the account closed.
            user = users.lock(user_id)
            if user is None:
                raise NotFound("No such user.")
            AddressRepository(connection).remove_all_of(user_id)
            users.erase(user_id, now=self._clock())


class OpenAccountTokenVerifier(TokenVerifier):
    """The user service's verifier: a valid token whose account is closed (or gone) is refused."""

    def __init__(self, key_source: KeySource, *, issuer: str, db: Database) -> None:
        super().__init__(key_source, issuer=issuer)
        self._db = db

    def verify(self, token: str) -> Principal:
        principal = super().verify(token)
        # Asked on every request, never remembered: closing takes effect at once.
        with self._db.transaction() as connection:
            is_open = UserRepository(connection).is_open(principal.user_id)
        if not is_open:
            raise Unauthorized("The account this token was issued to is closed.")
        return principal
