"""Identifiers: UUIDv7 strings, so inserts stay index-local and ids sort by creation time."""

from __future__ import annotations

import uuid

import uuid6


def new_id() -> str:
    return str(uuid6.uuid7())


def is_canonical_uuid(value: str) -> bool:
    """True for a UUID written in canonical lowercase form, the only form Shop hands out."""
    try:
        return str(uuid.UUID(value)) == value
    except ValueError:
        return False


# The ids Shop hands out: CANONICAL_UUID for routes, its anchored pattern for request models.
CANONICAL_UUID = r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}"
CANONICAL_UUID_PATTERN = f"^{CANONICAL_UUID}$"
