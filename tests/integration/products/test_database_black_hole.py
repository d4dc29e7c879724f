"""A database connection that goes silent (black-holed, not refused) ends in a 503 within the
driver's read timeout, and the service recovers by itself once the network carries bytes again.
The service talks to the real MariaDB through a TCP proxy that, on command, swallows bytes.
A server that refuses another connection (full) is equally a 503, not a 500."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator

import pytest
import sqlalchemy as sa
from flask import Flask

from common.ids import new_id
from tests.integration.products.conftest import assert_problem
from tests.support.blackhole import BlackHoleProxy, black_hole_proxy

READ_TIMEOUT_S = 2.0
# The read timeout, plus the time to answer on a slow shared machine.
ANSWER_WITHIN_S = READ_TIMEOUT_S + 3.0


@pytest.fixture
def proxy(product_db_url, database_backend) -> Iterator[BlackHoleProxy]:
    if database_backend != "mysql":
        pytest.skip("a black-holed network needs a database server (SQLite has none)")
    url = sa.make_url(product_db_url)
    with black_hole_proxy(url.host or "127.0.0.1", url.port or 3306) as proxy:
        yield proxy


@pytest.fixture
def app(make_product_app, product_db_url, proxy) -> Iterator[Flask]:
    proxied = sa.make_url(product_db_url).set(host="127.0.0.1", port=proxy.port)
    app = make_product_app(
        database_url=proxied.render_as_string(hide_password=False),
        db_read_timeout_s=READ_TIMEOUT_S,
        db_lock_wait_timeout_s=1,
        db_pool_size=2,
    )
    yield app
    app.extensions["database"].dispose()


def timed_get(app: Flask, path: str) -> tuple[int | None, float]:
    """The request's status and how long it took; None if it had not answered within the
    bound (it is left to end when the proxy closes its sockets)."""
    outcome: dict[str, int] = {}

    def get() -> None:
        outcome["status"] = app.test_client().get(path).status_code

    started = time.monotonic()
    request = threading.Thread(target=get, daemon=True)
    request.start()
    request.join(ANSWER_WITHIN_S)
    return outcome.get("status"), time.monotonic() - started


def test_a_black_holed_database_answers_503_within_the_read_timeout_then_recovers(app, proxy):
    client = app.test_client()
    assert client.get("/api/v1/products").status_code == 200  # a pooled connection, in use

    proxy.swallow()
    status, took = timed_get(app, "/api/v1/products")
    assert status == 503, f"no answer within {ANSWER_WITHIN_S} s (status {status})"
    assert took >= READ_TIMEOUT_S * 0.9  # the driver waited its read timeout, no less
    assert_problem(client.get("/api/v1/products"), 503)  # a new connection's handshake too

    proxy.forward()
    # The dead connections were dropped from the pool: the next request opens a fresh one.
    assert client.get("/api/v1/products").status_code == 200
    assert client.get("/health/ready").status_code == 200


@pytest.fixture
def one_connection_url(product_db_url, database_backend) -> Iterator[str]:
    """The product database as an account the server lets hold one connection at a time."""
    if database_backend != "mysql":
        pytest.skip("connection limits are a database server's (SQLite has none)")
    url = sa.make_url(product_db_url)
    user, password = f"waits_{new_id()[-12:]}", "a-test-password"
    root = sa.create_engine(url, poolclass=sa.pool.NullPool)
    with root.begin() as connection:
        for host in ("%", "localhost"):
            connection.execute(
                sa.text(
                    f"CREATE USER '{user}'@'{host}' IDENTIFIED BY '{password}' "
                    "WITH MAX_USER_CONNECTIONS 1"
                )
            )
            connection.execute(sa.text(f"GRANT ALL ON `{url.database}`.* TO '{user}'@'{host}'"))
    yield url.set(username=user, password=password).render_as_string(hide_password=False)
    with root.begin() as connection:
        for host in ("%", "localhost"):
            connection.execute(sa.text(f"DROP USER IF EXISTS '{user}'@'{host}'"))
    root.dispose()


def test_a_database_that_refuses_another_connection_answers_503(
    make_product_app, one_connection_url
):
    app = make_product_app(database_url=one_connection_url)
    holder = sa.create_engine(one_connection_url, poolclass=sa.pool.NullPool)
    try:
        with holder.connect():  # the account's one connection, taken
            response = app.test_client().get("/api/v1/products")
            assert_problem(response, 503)
            assert response.headers["Retry-After"]
        assert app.test_client().get("/api/v1/products").status_code == 200
    finally:
        app.extensions["database"].dispose()
        holder.dispose()
