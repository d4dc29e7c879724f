"""Editing an account: its email, phone and password. The role never changes here."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy.exc import IntegrityError

from common.auth import Principal, require_own_account
from common.db import Database, utcnow
from common.errors import Conflict, NotFound, Unauthorized, Unprocessable, field_error
from user_service.login import login_throttle, throttle_key
from user_service.passwords import Passwords
from user_service.repository import ProfileChanges, User, UserRepository
from user_service.settings import UserSettings

CURRENT_CREDENTIALS_WRONG = "The current password is wrong."


@dataclass(frozen=True)
class AccountEdit:
    """A PATCH of the account: None leaves a field as it is; `clear_phone` erases the phone."""

    email: str | None = None
    phone: str | None = None
    clear_phone: bool = False
    password: str | None = None
    current_password: str | None = None


class ProfileEditor:
    def __init__(
        self,
        db: Database,
        settings: UserSettings,
        passwords: Passwords,
        *,
        clock: Callable[[], datetime] = utcnow,
    ) -> None:
        self._db = db
        self._passwords = passwords
        # A wrong current password counts against the account as a failed login does, so a
        # stolen token cannot be used to guess the password that guards email and password.
        self._throttle = login_throttle(db, settings)
        self._clock = clock

    def update_user(self, user_id: str, principal: Principal, edit: AccountEdit) -> User:
        """The user proves the current password; an admin need not (if one is sent, it is
        checked all the same)."""
        require_own_account(principal, user_id)
        if edit.current_password is None and not principal.is_admin:
            raise Unprocessable(
                "Send your current password to change your account.",
                errors=[field_error("currentPassword", "required")],
            )
        with self._db.transaction() as connection:
            user = UserRepository(connection).get(user_id)
        if user is None:
            raise NotFound("No such user.")
        # argon2 is slow on purpose: no transaction is held open across it.
        verified_hash = self._verified_hash(user, edit.current_password)
        changes = ProfileChanges(
            email=edit.email,
            phone=edit.phone,
            clear_phone=edit.clear_phone,
            password_hash=None if edit.password is None else self._passwords.hash(edit.password),
        )
        if changes.is_empty():
            return user
        return self._apply(user_id, changes, verified_hash)

    def _verified_hash(self, user: User, current_password: str | None) -> str | None:
        if current_password is None:
            return None
        key = throttle_key(user.username or "", user, client_address=None)
        attempt = self._throttle.charge(key, self._clock())
        with self._throttle.refunded_if_unavailable(attempt):
            matches = self._passwords.verify(user.password_hash, current_password)
        if not matches:
            raise Unauthorized(CURRENT_CREDENTIALS_WRONG)
        self._throttle.clear(key)
        return user.password_hash

    def _apply(self, user_id: str, changes: ProfileChanges, verified_hash: str | None) -> User:
        try:
            with self._db.transaction() as connection:
                users = UserRepository(connection)
                if changes.email is not None:
                    _refuse_if_email_taken(users, user_id, changes.email)
                applied = users.update_profile(
                    user_id, changes, now=self._clock(), verified_hash=verified_hash
                )
                updated = users.get(user_id)
        except IntegrityError as exc:
            # Another account took the email between the check and the update.
            raise _email_taken() from exc
        if updated is None:
            raise NotFound("No such user.")  # closed meanwhile
        if not applied:
            # The password changed since it was verified: what was sent is no longer current.
            raise Unauthorized(CURRENT_CREDENTIALS_WRONG)
        return updated


def _refuse_if_email_taken(users: UserRepository, user_id: str, email: str) -> None:
    holder = users.by_email(email)
    if holder is not None and holder.id != user_id:
        raise _email_taken()


def _email_taken() -> Conflict:
    return Conflict("The email is already registered.", extra={"field": "email"})
