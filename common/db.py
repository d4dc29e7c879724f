"""The SQLAlchemy engine, transactions, portable column types and deadlock retries."""

from __future__ import annotations

import datetime as dt
import sqlite3
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, ParamSpec, TypeVar

import sqlalchemy as sa
from sqlalchemy.dialects import mysql
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import OperationalError
from tenacity import retry, retry_if_exception, stop_after_attempt, wait_random_exponential

from common.config import CommonSettings

P = ParamSpec("P")
R = TypeVar("R")

# MySQL/MariaDB: 1213 deadlock found, 1205 lock wait timeout. Both mean "run it again".
_RETRYABLE_MYSQL_ERRORS = {1205, 1213}


# A pooled connection idle longer than this is pinged before it is handed out.
PING_IF_IDLE_S = 5.0
# How long a request waits for a pooled connection (DB_POOL_TIMEOUT_S in a service).
POOL_TIMEOUT_S = 10.0
# How long the server lets a statement wait for a row or metadata lock
# (DB_LOCK_WAIT_TIMEOUT_S), and how long the driver waits for the server to answer or take a
# statement (DB_READ_TIMEOUT_S, DB_WRITE_TIMEOUT_S). The read timeout outlasts the lock wait,
# so a statement queued behind a lock ends with the server's own error 1205 (the lock is
# busy: the transaction can be run again), never with the driver giving up on a healthy
# server; past it, the connection itself is dead (black-holed, the server hung).
LOCK_WAIT_TIMEOUT_S = 5
READ_TIMEOUT_S = 15.0
WRITE_TIMEOUT_S = 15.0
# The longest value a statement may aggregate (GROUP_CONCAT, JSON_ARRAYAGG on MariaDB); an
# order's items, the largest, take under 100 KiB.
AGGREGATE_MAX_BYTES = 1024 * 1024


@dataclass(frozen=True)
class Deadlines:
    """Every wait of a database call: for a pooled connection, a lock, the server's answer."""

    pool_timeout_s: float = POOL_TIMEOUT_S
    lock_wait_timeout_s: int = LOCK_WAIT_TIMEOUT_S
    read_timeout_s: float = READ_TIMEOUT_S
    write_timeout_s: float = WRITE_TIMEOUT_S

    @classmethod
    def from_settings(cls, settings: CommonSettings) -> Deadlines:
        return cls(
            pool_timeout_s=settings.db_pool_timeout_s,
            lock_wait_timeout_s=settings.db_lock_wait_timeout_s,
            read_timeout_s=settings.db_read_timeout_s,
            write_timeout_s=settings.db_write_timeout_s,
        )


def create_db_engine(
    url: str,
    *,
    pool_size: int = 10,
    deadlines: Deadlines = Deadlines(),
    ping_if_idle_s: float = PING_IF_IDLE_S,
) -> Engine:
    engine_url = sa.make_url(url)
    if engine_url.get_backend_name() == "sqlite":
        return _create_sqlite_engine(url)
    engine = sa.create_engine(
        url,
        pool_size=pool_size,
        max_overflow=pool_size,
        # Past this wait for a connection, a request fails with 503 (common.errors).
        pool_timeout=deadlines.pool_timeout_s,
        pool_recycle=1800,
        # Every checkout goes through a SQLAlchemy Connection, whose close already ends any
        # transaction it began (commit or rollback); the pool's own ROLLBACK on return was a
        # second, empty round trip after every transaction.
        pool_reset_on_return=None,
        # Fewer gap locks than REPEATABLE READ; every invariant is kept by conditional
        # updates and row locks, never by re-reading a snapshot.
        isolation_level="READ COMMITTED",
        connect_args=_mysql_connect_args(deadlines),
    )
    _ping_connections_idle_for(engine, ping_if_idle_s)
    return engine


def _mysql_connect_args(deadlines: Deadlines) -> dict[str, Any]:
    """Without read and write timeouts PyMySQL waits for ever on a connection whose server or
    network went silent (a black hole answers nothing, not even a reset). With them, the wait
    ends in error 2013, which SQLAlchemy counts as a disconnect: the pool discards that
    connection and the request is answered 503 (common.errors)."""
    lock_wait_s = int(deadlines.lock_wait_timeout_s)
    return {
        "connect_timeout": 3,
        "read_timeout": deadlines.read_timeout_s,
        "write_timeout": deadlines.write_timeout_s,
        "charset": "utf8mb4",
        # Both lock waits (InnoDB's row locks, the server's metadata locks, whose default is a
        # year) end before the driver's read timeout would. MariaDB cuts an aggregated JSON
        # value (an order's items, read in one column) at group_concat_max_len, silently, and
        # a server may be set as low as MySQL's 1024 bytes: the session's is set far above the
        # largest such value.
        "init_command": (
            f"SET SESSION innodb_lock_wait_timeout = {lock_wait_s}, "
            f"lock_wait_timeout = {lock_wait_s}, "
            f"group_concat_max_len = {AGGREGATE_MAX_BYTES}"
        ),
    }


def _ping_connections_idle_for(engine: Engine, idle_s: float) -> None:
    """Pessimistic disconnect handling, but only for connections that sat idle in the pool:
    a connection handed back milliseconds ago (all of them, under load) is not worth a round
    trip, while one idle past `idle_s` (the server, a proxy or a failover may have dropped it)
    is pinged first and, if dead, replaced before anyone uses it. `pool_pre_ping` would ping
    every checkout: about a fifth of a transaction's database work here."""

    @sa.event.listens_for(engine, "checkin")
    def _note_checkin(_dbapi_connection: Any, record: Any) -> None:
        record.info["checked_in_at"] = time.monotonic()

    @sa.event.listens_for(engine, "checkout")
    def _ping_if_idle(dbapi_connection: Any, record: Any, _proxy: Any) -> None:
        checked_in_at = record.info.get("checked_in_at")
        if checked_in_at is None or time.monotonic() - checked_in_at < idle_s:
            return  # brand new, or just used
        try:
            engine.dialect.do_ping(dbapi_connection)
        except Exception as exc:
            # The pool discards this connection and checks out (or opens) another.
            raise sa.exc.DisconnectionError("an idle pooled connection was dead") from exc


def _create_sqlite_engine(url: str) -> Engine:
    engine = sa.create_engine(url, connect_args={"timeout": 30, "check_same_thread": False})

    @sa.event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        # Let Python's sqlite3 driver stop managing transactions, so BEGIN IMMEDIATE below
        # takes the write lock up front and concurrent writers queue instead of failing.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA foreign_keys=ON")
        # No waiting inside SQLite: see _begin_immediate.
        cursor.execute("PRAGMA busy_timeout=0")
        cursor.close()

    @sa.event.listens_for(engine, "begin")
    def _on_begin(connection: Connection) -> None:
        _begin_immediate(connection.connection.driver_connection)

    return engine


# How long a transaction waits for SQLite's write lock, and how often it tries again meanwhile.
_SQLITE_LOCK_WAIT_S = 30.0
_SQLITE_LOCK_RETRY_S = 0.002


def _begin_immediate(driver_connection: Any) -> None:
    """Takes the write lock up front, waiting for it here rather than in SQLite's busy handler:
    that one sleeps inside the C library, which in a gevent worker stalls every request of the
    process, the lock's holder included, while a Python sleep lets them run (and releases the
    GIL for threads alike). In WAL mode this lock is the only one a transaction waits for."""
    deadline = time.monotonic() + _SQLITE_LOCK_WAIT_S
    while True:
        try:
            driver_connection.execute("BEGIN IMMEDIATE")
            return
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or time.monotonic() >= deadline:
                raise
        time.sleep(_SQLITE_LOCK_RETRY_S)


class Database:
    """One engine per service process; every unit of work is one transaction on it."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    @classmethod
    def from_url(cls, url: str, *, pool_size: int = 10) -> Database:
        return cls(create_db_engine(url, pool_size=pool_size))

    @classmethod
    def from_settings(cls, settings: CommonSettings, *, pool_size: int | None = None) -> Database:
        """A service's database, pooled and timed out as its settings say."""
        return cls(
            create_db_engine(
                settings.database_url,
                pool_size=pool_size or settings.db_pool_size,
                deadlines=Deadlines.from_settings(settings),
            )
        )

    @property
    def dialect(self) -> str:
        return self.engine.dialect.name

    @contextmanager
    def transaction(self) -> Iterator[Connection]:
        """Commits when the block ends normally, rolls back when it raises."""
        with self.engine.begin() as connection:
            yield connection

    def ping(self) -> None:
        with self.engine.connect() as connection:
            connection.execute(sa.text("SELECT 1"))

    def dispose(self) -> None:
        self.engine.dispose()


def is_retryable_conflict(exc: BaseException) -> bool:
    if not isinstance(exc, OperationalError) or exc.orig is None or not exc.orig.args:
        return False
    return exc.orig.args[0] in _RETRYABLE_MYSQL_ERRORS


def retry_on_deadlock(func: Callable[P, R]) -> Callable[P, R]:
    """Re-run a whole transaction the database chose as a deadlock victim."""
    return retry(
        retry=retry_if_exception(is_retryable_conflict),
        stop=stop_after_attempt(5),
        wait=wait_random_exponential(multiplier=0.01, max=0.2),
        reraise=True,
    )(func)


class UtcDateTime(sa.types.TypeDecorator[dt.datetime]):
    """Stored as naive UTC with microseconds; always handed back timezone-aware."""

    impl = sa.DateTime
    cache_ok = True

    def load_dialect_impl(self, dialect: sa.Dialect) -> sa.types.TypeEngine[Any]:
        if dialect.name == "mysql":
            return dialect.type_descriptor(mysql.DATETIME(fsp=6))
        return dialect.type_descriptor(sa.DateTime())

    def process_bind_param(self, value: dt.datetime | None, dialect: sa.Dialect) -> Any:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetimes are ambiguous; pass an aware UTC datetime")
        return value.astimezone(dt.UTC).replace(tzinfo=None)

    def process_result_value(self, value: Any, dialect: sa.Dialect) -> dt.datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=dt.UTC)  # type: ignore[no-any-return]


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def isoformat(value: dt.datetime) -> str:
    return value.astimezone(dt.UTC).isoformat().replace("+00:00", "Z")
