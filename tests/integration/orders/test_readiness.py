"""The order service's readiness is its database only; the queue is reported, never required:
the outbox keeps events while SQS is away, so the pods must stay in service."""

from __future__ import annotations

import time

import pytest
from flask import Flask

from order_service.app import create_app
from order_service.settings import OrderSettings
from tests.support.tokens import StaticKeys

# Nothing listens on the discard port: a connection there is refused at once.
NOWHERE = "http://127.0.0.1:9"


@pytest.fixture
def order_app(order_db, local_sqs, monkeypatch):
    for name, value in local_sqs.environment().items():
        monkeypatch.setenv(name, value)

    def make(*, sqs_endpoint_url: str, database_url: str | None = None) -> Flask:
        url = database_url or order_db.engine.url.render_as_string(hide_password=False)
        settings = OrderSettings.model_validate(
            {"database_url": url, "sqs_endpoint_url": sqs_endpoint_url, "db_pool_size": 2}
        )
        return create_app(settings, keys=StaticKeys())

    return make


def test_ready_with_the_queue_reported_ok(order_app, local_sqs):
    answer = order_app(sqs_endpoint_url=local_sqs.endpoint).test_client().get("/health/ready")
    assert answer.status_code == 200, answer.text
    assert answer.json == {"status": "ok", "queue": "ok"}


def test_ready_while_the_queue_is_unreachable_and_says_so_quickly(order_app):
    client = order_app(sqs_endpoint_url=NOWHERE).test_client()
    started = time.monotonic()
    answer = client.get("/health/ready")
    assert answer.status_code == 200, answer.text
    assert answer.json == {"status": "ok", "queue": "unreachable"}
    assert time.monotonic() - started < 3  # inside the probe's timeoutSeconds


def test_not_ready_without_its_database(order_app, database_backend):
    if database_backend != "mysql":
        pytest.skip("SQLite has no server to be down")
    app = order_app(
        sqs_endpoint_url=NOWHERE, database_url="mysql+pymysql://root@127.0.0.1:9/orders"
    )
    answer = app.test_client().get("/health/ready")
    assert answer.status_code == 503
    assert int(answer.headers["Retry-After"]) >= 1
