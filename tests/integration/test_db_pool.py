"""The connection pool against a real MySQL server: a pooled connection the server dropped
while it sat idle is replaced before anyone uses it."""

from __future__ import annotations

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from common.db import create_db_engine


@pytest.fixture
def mysql_url(databases, database_backend) -> str:
    if database_backend != "mysql":
        pytest.skip("dropping a connection server-side needs MySQL's KILL")
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
