"""Bulk writes straight into a service's MySQL database, timed per table.

PyMySQL's `executemany` of one `INSERT ... VALUES (%s, ...)` sends multi-row INSERTs (as many
rows as fit in a packet): one statement and one round trip per few thousand rows, where the
service's own path would cost one per row.
"""

from __future__ import annotations

import queue
import threading
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, TypeVar, cast

import pymysql
import sqlalchemy as sa

Connection = Any  # a PyMySQL connection (the driver ships no type hints)
T = TypeVar("T")


def open_connection(url: str) -> Connection:
    """A bare PyMySQL connection to the database of a SQLAlchemy URL, autocommit off."""
    parsed = sa.make_url(url)
    return pymysql.connect(
        host=parsed.host or "127.0.0.1",
        port=parsed.port or 3306,
        user=parsed.username or "root",
        password=parsed.password or "",
        database=parsed.database,
        charset="utf8mb4",
        autocommit=False,
    )


def connect(url: str) -> Connection:
    connection = open_connection(url)
    with connection.cursor() as cursor:
        # The rows are consistent by construction (bench/scale_rows.py): checking each
        # against the unique and foreign keys one at a time is what makes loads slow.
        cursor.execute("SET SESSION unique_checks = 0, foreign_key_checks = 0")
    return connection


def insert_statement(table: sa.Table, columns: Sequence[str]) -> str:
    """`INSERT INTO table (columns) VALUES (%s, ...)`, the names checked against the service's
    own table definition so a renamed column fails here, not as silently wrong rows."""
    unknown = [name for name in columns if name not in table.c]
    if unknown:
        raise ValueError(f"{table.name} has no column {', '.join(unknown)}")
    names = ", ".join(columns)
    marks = ", ".join(["%s"] * len(columns))
    # Only identifiers from the table's own definition and %s placeholders are interpolated.
    return f"INSERT INTO {table.name} ({names}) VALUES ({marks})"  # noqa: S608


@dataclass
class LoadClock:
    """Seconds and rows spent on each table, summed over every chunk."""

    seconds: defaultdict[str, float] = field(default_factory=lambda: defaultdict(float))
    rows: Counter[str] = field(default_factory=Counter)

    def insert(
        self,
        connection: Connection,
        table: sa.Table,
        columns: Sequence[str],
        rows: Iterable[Sequence[object]],
    ) -> None:
        """Writes and commits the rows (one transaction per chunk keeps the undo log small)."""
        batch = list(rows)
        if not batch:
            return
        started = time.perf_counter()
        with connection.cursor() as cursor:
            cursor.executemany(insert_statement(table, columns), batch)
        connection.commit()
        self.seconds[table.name] += time.perf_counter() - started
        self.rows[table.name] += len(batch)

    def as_dict(self) -> dict[str, dict[str, float]]:
        return {
            name: {"rows": self.rows[name], "seconds": round(seconds, 1)}
            for name, seconds in self.seconds.items()
        }


@dataclass(frozen=True)
class Index:
    """A secondary index as the database holds it, enough to build it again."""

    table: str
    name: str
    unique: bool
    # Each column with its prefix length, if the index keeps only a prefix of it.
    columns: tuple[tuple[str, int | None], ...]

    def definition(self) -> str:
        kind = "UNIQUE INDEX" if self.unique else "INDEX"
        parts = (
            f"`{name}`" + ("" if length is None else f"({length})") for name, length in self.columns
        )
        return f"ADD {kind} `{self.name}` ({', '.join(parts)})"


def indexes_led_by(connection: Connection, table: str, column: str) -> list[Index]:
    """The table's secondary indexes whose first column is `column`, from the server's own
    catalogue (so they are rebuilt exactly as the migrations made them)."""
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT index_name, non_unique, column_name, sub_part "
            "FROM information_schema.statistics "
            "WHERE table_schema = DATABASE() AND table_name = %s AND index_name <> 'PRIMARY' "
            "ORDER BY index_name, seq_in_index",
            (table,),
        )
        rows = cursor.fetchall()
    columns: dict[str, list[tuple[str, int | None]]] = defaultdict(list)
    unique: dict[str, bool] = {}
    for name, non_unique, column_name, prefix in rows:
        columns[name].append((column_name, prefix))
        unique[name] = not non_unique
    return [
        Index(table, name, unique[name], tuple(found))
        for name, found in columns.items()
        if found[0][0] == column
    ]


@contextmanager
def built_after(
    connection: Connection, indexes: Sequence[Index], clock: LoadClock
) -> Iterator[None]:
    """Without these indexes while the body loads, then each built again in one sort: rows
    that reach an index in random order (a customer's orders are spread over the year) cost
    a page read each once it outgrows the buffer pool; one sort writes it in order."""
    _alter(connection, indexes, lambda index: f"DROP INDEX `{index.name}`")
    yield
    # Not in a `finally`: a load that failed is thrown away, not worth minutes of sorting.
    started = time.perf_counter()
    _alter(connection, indexes, Index.definition)
    clock.seconds["secondary indexes built after the load"] += time.perf_counter() - started


def _alter(
    connection: Connection, indexes: Sequence[Index], clause: Callable[[Index], str]
) -> None:
    by_table: dict[str, list[Index]] = defaultdict(list)
    for index in indexes:
        by_table[index.table].append(index)
    with connection.cursor() as cursor:
        for table, of_table in by_table.items():
            # Names from the server's catalogue and the table's definition only.
            cursor.execute(f"ALTER TABLE `{table}` " + ", ".join(map(clause, of_table)))


@dataclass(frozen=True)
class _Failed:
    error: BaseException


_DONE = object()


def prefetched(chunks: Iterator[T], depth: int = 2) -> Iterator[T]:
    """The same chunks, the next ones made by a thread while the database writes this one:
    making them is Python's work, writing them the server's, and the machine has two cores."""
    ready: queue.Queue[object] = queue.Queue(depth)

    def make() -> None:
        try:
            for chunk in chunks:
                ready.put(chunk)
        except BaseException as exc:  # handed to the consumer, which raises it
            ready.put(_Failed(exc))
            return
        ready.put(_DONE)

    threading.Thread(target=make, daemon=True).start()
    while (item := ready.get()) is not _DONE:
        if isinstance(item, _Failed):
            raise item.error
        yield cast(T, item)
