"""The address book: each user's shipping addresses, at most MAX_ADDRESSES_PER_USER of them.

The order service reads one address (with its service token) to copy it onto an order: the
lookup by user and address id proves in one query that the address is that user's, and a
closed account has no addresses left to find.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from datetime import datetime

from common.auth import Principal, require_own_account
from common.db import Database, utcnow
from common.errors import Conflict, NotFound
from common.ids import new_id
from user_service.address_repository import Address, AddressFields, AddressRepository
from user_service.repository import UserRepository

MAX_ADDRESSES_PER_USER = 20

# A PATCH: the fields sent, by name; None clears an optional field.
AddressChanges = Mapping[str, str | None]


class AddressBook:
    def __init__(self, db: Database, *, clock: Callable[[], datetime] = utcnow) -> None:
        self._db = db
        self._clock = clock

    def add(self, user_id: str, principal: Principal, fields: AddressFields) -> Address:
        require_own_account(principal, user_id)
        now = self._clock()
        address = Address(new_id(), user_id, fields, now, now)
        with self._db.transaction() as connection:
            # The account's row lock serialises this user's additions (and a closing), so
            # the count below stays true until the insert commits: parallel requests cannot
            # slip past the cap.
            if UserRepository(connection).lock(user_id) is None:
                raise NotFound("No such user.")
            book = AddressRepository(connection)
            if book.count_of(user_id) >= MAX_ADDRESSES_PER_USER:
                raise Conflict(
                    f"An address book holds at most {MAX_ADDRESSES_PER_USER} addresses; "
                    "delete one first."
                )
            book.add(address)
        return address

    def page(
        self, user_id: str, principal: Principal, *, after_id: str | None, limit: int
    ) -> list[Address]:
        require_own_account(principal, user_id)
        with self._db.transaction() as connection:
            if not UserRepository(connection).is_open(user_id):
                raise NotFound("No such user.")
            return AddressRepository(connection).page_of(user_id, after_id=after_id, limit=limit)

    def get(self, user_id: str, address_id: str, principal: Principal) -> Address:
        require_own_account(principal, user_id)
        with self._db.transaction() as connection:
            address = AddressRepository(connection).get(user_id, address_id)
        return _found(address)

    def edit(
        self, user_id: str, address_id: str, principal: Principal, changes: AddressChanges
    ) -> Address:
        require_own_account(principal, user_id)
        with self._db.transaction() as connection:
            book = AddressRepository(connection)
            current = _found(book.get(user_id, address_id, for_update=True))
            if not changes:
                return current
            edited = dataclasses.replace(
                current,
                fields=AddressFields(**{**dataclasses.asdict(current.fields), **changes}),
                updated_at=self._clock(),
            )
            book.replace_fields(edited)
        return edited

    def remove(self, user_id: str, address_id: str, principal: Principal) -> None:
        require_own_account(principal, user_id)
        with self._db.transaction() as connection:
            removed = AddressRepository(connection).remove(user_id, address_id)
        if not removed:
            raise NotFound("No such address.")


def _found(address: Address | None) -> Address:
    if address is None:
        raise NotFound("No such address.")
    return address
