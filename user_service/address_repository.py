"""The address book's table and every SQL statement on it."""

from __future__ import annotations

from dataclasses import dataclass, fields
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from common.db import UtcDateTime
from user_service.phones import E164_MAX_LENGTH
from user_service.repository import metadata

# The longest value each text field takes: the request models, these columns and
# openapi.yaml say the same.
MAX_LENGTHS = {
    "label": 50,
    "recipient": 100,
    "line1": 200,
    "line2": 200,
    "city": 100,
    "region": 100,
    "postal_code": 20,
}

addresses = sa.Table(
    "addresses",
    metadata,
    sa.Column("id", sa.String(36), primary_key=True),
    sa.Column("user_id", sa.String(36), sa.ForeignKey("users.id"), nullable=False),
    sa.Column("label", sa.String(MAX_LENGTHS["label"])),
    sa.Column("recipient", sa.String(MAX_LENGTHS["recipient"]), nullable=False),
    sa.Column("line1", sa.String(MAX_LENGTHS["line1"]), nullable=False),
    sa.Column("line2", sa.String(MAX_LENGTHS["line2"])),
    sa.Column("city", sa.String(MAX_LENGTHS["city"]), nullable=False),
    sa.Column("region", sa.String(MAX_LENGTHS["region"])),
    sa.Column("postal_code", sa.String(MAX_LENGTHS["postal_code"]), nullable=False),
    sa.Column("country", sa.String(2), nullable=False),
    sa.Column("phone", sa.String(E164_MAX_LENGTH)),
    sa.Column("created_at", UtcDateTime(), nullable=False),
    sa.Column("updated_at", UtcDateTime(), nullable=False),
    # A user's addresses in creation order (ids are UUIDv7), and their count, from the index.
    sa.Index("ix_addresses_user_id_id", "user_id", "id"),
)


@dataclass(frozen=True)
class AddressFields:
    """What the owner writes; None is an absent optional field."""

    recipient: str
    line1: str
    city: str
    postal_code: str
    country: str
    label: str | None = None
    line2: str | None = None
    region: str | None = None
    phone: str | None = None


@dataclass(frozen=True)
class Address:
    id: str
    user_id: str
    fields: AddressFields
    created_at: datetime
    updated_at: datetime


_FIELD_NAMES = tuple(field.name for field in fields(AddressFields))
_COLUMNS = (
    addresses.c.id,
    addresses.c.user_id,
    addresses.c.created_at,
    addresses.c.updated_at,
    *(addresses.c[name] for name in _FIELD_NAMES),
)


class AddressRepository:
    def __init__(self, connection: Connection) -> None:
        self._db = connection

    def add(self, address: Address) -> None:
        self._db.execute(
            addresses.insert().values(
                id=address.id,
                user_id=address.user_id,
                created_at=address.created_at,
                updated_at=address.updated_at,
                **_values_of(address.fields),
            )
        )

    def count_of(self, user_id: str) -> int:
        count = self._db.execute(
            sa.select(sa.func.count()).select_from(addresses).where(addresses.c.user_id == user_id)
        ).scalar_one()
        return int(count)

    def get(self, user_id: str, address_id: str, *, for_update: bool = False) -> Address | None:
        """The address, if it is this user's: owner and address proved by one lookup."""
        query = sa.select(*_COLUMNS).where(
            addresses.c.id == address_id, addresses.c.user_id == user_id
        )
        row = self._db.execute(query.with_for_update() if for_update else query).first()
        return None if row is None else _address_of(row)

    def page_of(self, user_id: str, *, after_id: str | None, limit: int) -> list[Address]:
        query = sa.select(*_COLUMNS).where(addresses.c.user_id == user_id)
        if after_id is not None:
            query = query.where(addresses.c.id > after_id)
        rows = self._db.execute(query.order_by(addresses.c.id).limit(limit))
        return [_address_of(row) for row in rows]

    def replace_fields(self, address: Address) -> None:
        self._db.execute(
            addresses.update()
            .where(addresses.c.id == address.id)
            .values(updated_at=address.updated_at, **_values_of(address.fields))
        )

    def remove(self, user_id: str, address_id: str) -> bool:
        deleted = self._db.execute(
            addresses.delete().where(addresses.c.id == address_id, addresses.c.user_id == user_id)
        )
        return deleted.rowcount == 1

    def remove_all_of(self, user_id: str) -> None:
        self._db.execute(addresses.delete().where(addresses.c.user_id == user_id))


def _values_of(address_fields: AddressFields) -> dict[str, str | None]:
    return {name: getattr(address_fields, name) for name in _FIELD_NAMES}


def _address_of(row: sa.Row[Any]) -> Address:
    column = row._mapping
    return Address(
        id=column["id"],
        user_id=column["user_id"],
        fields=AddressFields(**{name: column[name] for name in _FIELD_NAMES}),
        created_at=column["created_at"],
        updated_at=column["updated_at"],
    )
