"""The product service as it runs in production: gunicorn workers, real tokens from the user
service's JWKS, the CLI's migrations."""

from __future__ import annotations

import uuid

import requests

from tests.e2e.conftest import ADMIN, SERVICE


def test_an_admin_creates_and_anyone_searches(product_service, login_token):
    admin = {"Authorization": f"Bearer {login_token(ADMIN)}"}
    word = "e2e" + uuid.uuid4().hex[:8]
    created = requests.post(
        f"{product_service.url}/api/v1/products",
        json={"name": f"Walnut {word} desk", "price": "249.00", "stock": 3},
        headers=admin,
        timeout=5,
    )
    assert created.status_code == 201, created.text
    found = requests.get(
        f"{product_service.url}/api/v1/products/search", params={"q": word}, timeout=5
    ).json()
    assert [item["id"] for item in found["items"]] == [created.json()["id"]]


def test_the_service_account_reserves_and_releases(product_service, login_token):
    admin = {"Authorization": f"Bearer {login_token(ADMIN)}"}
    service = {"Authorization": f"Bearer {login_token(SERVICE)}"}
    product = requests.post(
        f"{product_service.url}/api/v1/products",
        json={"name": "Reservable", "price": "1.00", "stock": 5},
        headers=admin,
        timeout=5,
    ).json()["id"]
    rid = str(uuid.uuid4())
    body = {"reservationId": rid, "items": [{"productId": product, "quantity": 2}]}
    url = f"{product_service.url}/api/v1/reservations"
    assert requests.post(url, json=body, headers=service, timeout=5).status_code == 201
    assert requests.post(url, json=body, headers=service, timeout=5).status_code == 201
    stock = requests.get(f"{product_service.url}/api/v1/products/{product}", timeout=5).json()
    assert stock["stock"] == 3
    released = requests.post(f"{url}/{rid}/release", headers=service, timeout=5)
    assert released.status_code == 200
    stock = requests.get(f"{product_service.url}/api/v1/products/{product}", timeout=5).json()
    assert stock["stock"] == 5


def test_a_forged_token_is_refused(product_service):
    response = requests.post(
        f"{product_service.url}/api/v1/products",
        json={"name": "x", "price": "1.00", "stock": 1},
        headers={"Authorization": "Bearer a.b.c"},
        timeout=5,
    )
    assert response.status_code == 401
    assert response.headers["Content-Type"] == "application/problem+json"


def test_a_request_line_too_long_is_refused_as_problem_json(product_service):
    """Answered by gunicorn itself, before the service: still problem+json, as documented."""
    response = requests.get(
        f"{product_service.url}/api/v1/products/search", params={"q": "x" * 9000}, timeout=10
    )
    assert response.status_code == 414
    assert response.headers["Content-Type"] == "application/problem+json"
    assert response.json()["status"] == 414


def test_a_long_but_acceptable_search_reaches_the_service(product_service):
    response = requests.get(
        f"{product_service.url}/api/v1/products/search", params={"q": "x" * 5000}, timeout=10
    )
    assert response.status_code == 422  # q is too long for the contract, not for the server
    assert response.headers["Content-Type"] == "application/problem+json"
