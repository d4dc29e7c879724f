from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient

from common.migrations import upgrade_to_head
from product_service.app import MIGRATIONS_DIR, create_app
from product_service.settings import ProductSettings
from tests.support.tokens import StaticKeys, role_token

PROBLEM = "application/problem+json"
# A well-formed product id no test ever creates (fixed, so xdist workers collect alike).
UNKNOWN_ID = "00000000-0000-7000-8000-00000000f00d"


@pytest.fixture(scope="session")
def product_db_url(databases) -> str:
    url = databases.create("products")
    upgrade_to_head(url, MIGRATIONS_DIR)
    return url


def new_product_app(**settings: object) -> Flask:
    values: dict[str, object] = {"db_pool_size": 20, **settings}
    return create_app(ProductSettings.model_validate(values), keys=StaticKeys())


@pytest.fixture(scope="session")
def make_product_app(product_db_url: str) -> Callable[..., Flask]:
    def make(**overrides: object) -> Flask:
        return new_product_app(**{"database_url": product_db_url, **overrides})

    return make


@pytest.fixture(scope="session")
def product_app_on_each_backend(each_backend: str, databases_of) -> Flask:
    """The product service on a fresh database of `each_backend` (see tests/conftest.py)."""
    url = databases_of(each_backend).create("products")
    upgrade_to_head(url, MIGRATIONS_DIR)
    return new_product_app(database_url=url)


@pytest.fixture(scope="session")
def product_app(make_product_app) -> Flask:
    return make_product_app()


@pytest.fixture
def client(product_app: Flask) -> FlaskClient:
    return product_app.test_client()


def auth(role: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {role_token(role)}"}


ADMIN = auth("admin")
SERVICE = auth("service")
CUSTOMER = auth("customer")


def assert_problem(response, status: int) -> dict[str, Any]:
    assert response.status_code == status, response.get_data(as_text=True)
    assert response.mimetype == PROBLEM
    body = response.get_json()
    assert body["status"] == status
    assert {"type", "title", "detail"} <= body.keys()
    return body


@pytest.fixture
def create_product(client: FlaskClient) -> Callable[..., dict[str, Any]]:
    """Creates a product as admin and returns its JSON."""

    def create(**fields: Any) -> dict[str, Any]:
        payload = {"name": "Widget", "description": "A useful widget", "price": "9.99", "stock": 10}
        payload.update(fields)
        response = client.post("/api/v1/products", json=payload, headers=ADMIN)
        assert response.status_code == 201, response.get_data(as_text=True)
        return response.get_json()

    return create
