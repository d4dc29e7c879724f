"""Deleting old rows in slices: each slice one short transaction, each run a bounded number of
slices, so pruning never holds a long lock and a huge backlog is worked off over several runs."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import TypeVar

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from common.db import Database

R = TypeVar("R")
# The most slices one run deletes: a million rows at the default slice size.
MAX_SLICES = 1000


def delete_where(
    connection: Connection, table: sa.Table, where: sa.ColumnElement[bool], limit: int
) -> int:
    """Deletes up to `limit` rows matching `where`, found first by primary key (the portable
    form of MySQL's DELETE ... LIMIT); returns how many."""
    key = list(table.primary_key.columns)
    rows = connection.execute(sa.select(*key).where(where).limit(limit)).all()
    if not rows:
        return 0
    if len(key) == 1:
        found = key[0].in_([row[0] for row in rows])
    else:
        found = sa.tuple_(*key).in_([tuple(row) for row in rows])
    connection.execute(table.delete().where(found))
    return len(rows)


def delete_before(
    db: Database,
    repository: Callable[[Connection], R],
    delete_slice: Callable[[R, datetime, int], int],
    cutoff: datetime,
    *,
    slice_size: int,
    max_slices: int = MAX_SLICES,
) -> int:
    """Runs `delete_slice(repository(connection), cutoff, slice_size)`, each time in a
    transaction of its own, until a slice comes back short or `max_slices` ran; returns how
    many rows went."""
    deleted = 0
    for _ in range(max_slices):
        with db.transaction() as connection:
            removed = delete_slice(repository(connection), cutoff, slice_size)
        deleted += removed
        if removed < slice_size:
            break
    return deleted
