"""The connection pool against a real MySQL server: a pooled connection the server dropped
while it sat idle is replaced before anyone uses it."""

from __future__ import annotations

import time

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from common.db import AGGREGATE_MAX_BYTES, Deadlines, create_db_engine, is_retryable_conflict
from tests.support.greenlets import run_patched


@pytest.fixture
def mysql_url(databases, database_backend) -> str:
    if database_backend != "mysql":
        pytest.skip("these are the MySQL engine's pool settings (SQLite has no server to drop)")
    return databases.create("pool")


def connection_id(engine: Engine) -> int:
    with engine.begin() as connection:
        return int(connection.execute(sa.text("SELECT CONNECTION_ID()")).scalar_one())


def kill_from_outside(url: str, victim: int) -> None:
    killer = sa.create_engine(url, poolclass=sa.pool.NullPool)
    with killer.begin() as connection:
        connection.execute(sa.text(f"KILL CONNECTION {victim}"))
    killer.dispose()


def test_an_idle_connection_the_server_dropped_is_replaced_unseen(mysql_url):
    engine = create_db_engine(mysql_url, pool_size=1, ping_if_idle_s=0.0)
    killed = connection_id(engine)
    kill_from_outside(mysql_url, killed)

    assert connection_id(engine) != killed  # no error: the ping found it dead first
    engine.dispose()


def test_a_connection_used_moments_ago_is_not_pinged(mysql_url):
    """The other side of the trade: within the idle window the pool trusts the connection,
    so a drop in that window costs one failed transaction, and the pool then recovers."""
    engine = create_db_engine(mysql_url, pool_size=1, ping_if_idle_s=3600.0)
    killed = connection_id(engine)
    kill_from_outside(mysql_url, killed)

    with pytest.raises(sa.exc.OperationalError):
        connection_id(engine)
    assert connection_id(engine) != killed
    engine.dispose()


def test_every_connection_aggregates_values_as_long_as_an_order_needs(mysql_url):
    """Whatever the server's own group_concat_max_len (MySQL's default is 1024 bytes), each
    session allows the engine's: an order's items, read as one aggregated value on MariaDB,
    are never cut short."""
    engine = create_db_engine(mysql_url, pool_size=1)
    with engine.connect() as connection:
        allowed = connection.exec_driver_sql("SELECT @@SESSION.group_concat_max_len").scalar()
    assert allowed == AGGREGATE_MAX_BYTES
    engine.dispose()


def rows_in(engine: Engine) -> int:
    with engine.begin() as connection:
        return int(connection.execute(sa.text("SELECT COUNT(*) FROM scratch")).scalar_one())


def test_a_connection_comes_back_to_the_pool_with_no_transaction_open(mysql_url):
    """The pool does not roll back on return (a wasted round trip), so this proves nothing
    is left open: with one pooled connection, the next user would see its own uncommitted
    rows if a transaction had survived."""
    engine = create_db_engine(mysql_url, pool_size=1)
    with engine.begin() as connection:
        connection.execute(sa.text("CREATE TABLE scratch (id INT PRIMARY KEY)"))

    with engine.connect() as connection:  # never committed
        connection.execute(sa.text("INSERT INTO scratch VALUES (1)"))
    assert rows_in(engine) == 0

    def failing_unit_of_work() -> None:
        with engine.begin() as connection:
            connection.execute(sa.text("INSERT INTO scratch VALUES (2)"))
            raise RuntimeError("the unit of work fails halfway")

    with pytest.raises(RuntimeError):
        failing_unit_of_work()
    assert rows_in(engine) == 0

    with engine.begin() as connection:
        connection.execute(sa.text("INSERT INTO scratch VALUES (3)"))
    assert rows_in(engine) == 1
    engine.dispose()


def test_a_statement_waiting_for_a_lock_ends_with_the_servers_lock_error_before_the_read_timeout(
    mysql_url,
):
    """The lock wait is the server's to end (1205: run the transaction again), well inside the
    driver's read timeout, so a busy row never costs a healthy connection."""
    engine = create_db_engine(
        mysql_url, deadlines=Deadlines(lock_wait_timeout_s=1, read_timeout_s=4)
    )
    with engine.begin() as connection:
        connection.execute(sa.text("CREATE TABLE locked (id INT PRIMARY KEY)"))
        connection.execute(sa.text("INSERT INTO locked VALUES (1)"))

    with engine.connect() as holder, holder.begin():
        holder.execute(sa.text("SELECT id FROM locked WHERE id = 1 FOR UPDATE"))
        started = time.monotonic()
        with pytest.raises(sa.exc.OperationalError) as waited, engine.begin() as waiter:
            waiter.execute(sa.text("SELECT id FROM locked WHERE id = 1 FOR UPDATE"))
        took = time.monotonic() - started
    assert is_retryable_conflict(waited.value)  # 1205, not the driver's 2013
    assert 0.9 <= took < 3.0
    engine.dispose()


_BLACK_HOLE_UNDER_GEVENT = """
    import sys
    import time

    import sqlalchemy as sa

    from common.db import Deadlines, create_db_engine
    from tests.support.blackhole import black_hole_proxy

    url = sa.make_url(sys.argv[1])
    with black_hole_proxy(url.host, url.port or 3306) as proxy:
        proxied = url.set(host="127.0.0.1", port=proxy.port)
        engine = create_db_engine(
            proxied.render_as_string(hide_password=False),
            deadlines=Deadlines(lock_wait_timeout_s=1, read_timeout_s=2),
        )
        with engine.connect() as connection:
            connection.execute(sa.text("SELECT 1"))
        proxy.swallow()
        started = time.monotonic()
        try:
            with engine.connect() as connection:
                connection.execute(sa.text("SELECT 1"))
        except sa.exc.OperationalError as exc:
            print(exc.orig.args[0], exc.connection_invalidated, time.monotonic() - started < 4)
        proxy.forward()
        with engine.connect() as connection:
            print(connection.execute(sa.text("SELECT 1")).scalar_one())
"""


def test_a_black_holed_connection_times_out_under_gevent_too(mysql_url):
    """The order service runs in a gevent worker, whose patched sockets carry the timeout."""
    printed = run_patched(_BLACK_HOLE_UNDER_GEVENT, mysql_url, timeout_s=30).split("\n")
    assert printed[:2] == ["2013 True True", "1"]
