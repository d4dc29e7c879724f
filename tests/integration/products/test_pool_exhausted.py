"""A service whose database connections are all in use answers 503 once the pool's wait is
over, with Retry-After, instead of a 500: an overload, not a bug."""

from __future__ import annotations

from contextlib import ExitStack

import pytest

from tests.integration.products.conftest import ADMIN, assert_problem


@pytest.fixture
def mysql_only(database_backend) -> None:
    if database_backend != "mysql":
        pytest.skip("SQLite's engine has no bounded pool to exhaust")


def test_a_request_that_finds_every_connection_taken_is_answered_503(mysql_only, make_product_app):
    app = make_product_app(db_pool_size=1, db_pool_timeout_s=0.2)
    engine = app.extensions["database"].engine
    client = app.test_client()
    with ExitStack() as held:
        # A pool of one, and one more it may open beyond that: both taken.
        for _ in range(2):
            held.enter_context(engine.connect())
        body = assert_problem(client.get("/api/v1/products", headers=ADMIN), 503)
        assert "busy" in body["detail"]
    assert client.get("/api/v1/products", headers=ADMIN).status_code == 200
    engine.dispose()
