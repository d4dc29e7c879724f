"""Calls the order tests make again and again, spelled once."""

from __future__ import annotations

import threading
import uuid
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import urlsplit

import requests
import schemathesis

from tests.e2e.conftest import Account

T = TypeVar("T")
TIMEOUT_S = 20
PROBLEM = "application/problem+json"
SPEC = Path(__file__).resolve().parents[3] / "order_service" / "openapi.yaml"
SCHEMA = schemathesis.openapi.from_path(str(SPEC))


def conforming(response: requests.Response) -> requests.Response:
    """The response, once it is shown to be one the order service's OpenAPI document allows
    (status, media type, body, headers) for the request that was made."""
    request = response.request
    assert request.method is not None and request.url is not None
    path = urlsplit(request.url).path
    operation = SCHEMA.find_operation_by_path(request.method, path)
    assert operation is not None, f"{request.method} {path} is not in the document"
    documented = operation.definition.raw["responses"]
    assert str(response.status_code) in documented, (
        f"{request.method} {path} answered {response.status_code}, which is not documented "
        f"(only {sorted(documented)}): {response.text[:300]}"
    )
    operation.validate_response(response)
    return response


def line(product: dict[str, Any], quantity: int = 1) -> dict[str, Any]:
    return {"productId": product["id"], "quantity": quantity}


def place_order(
    base_url: str,
    account: Account,
    items: Sequence[dict[str, Any]],
    *,
    key: str | None = None,
    user_id: str | None = None,
    headers: dict[str, str] | None = None,
) -> requests.Response:
    body: dict[str, Any] = {"items": list(items)}
    if user_id is not None:
        body["userId"] = user_id
    sent = {**account.headers, **(headers or {})}
    if key is not None:
        sent["Idempotency-Key"] = key
    return conforming(
        requests.post(f"{base_url}/api/v1/orders", json=body, headers=sent, timeout=TIMEOUT_S)
    )


def placed(base_url: str, account: Account, items: Sequence[dict[str, Any]]) -> dict[str, Any]:
    response = place_order(base_url, account, items)
    assert response.status_code == 201, response.text
    order: dict[str, Any] = response.json()
    return order


def transition(base_url: str, account: Account, order_id: str, action: str) -> requests.Response:
    return conforming(
        requests.post(
            f"{base_url}/api/v1/orders/{order_id}/{action}",
            headers=account.headers,
            timeout=TIMEOUT_S,
        )
    )


def get_order(base_url: str, account: Account, order_id: str) -> requests.Response:
    return conforming(
        requests.get(
            f"{base_url}/api/v1/orders/{order_id}", headers=account.headers, timeout=TIMEOUT_S
        )
    )


def list_orders(base_url: str, account: Account, **params: Any) -> requests.Response:
    return conforming(
        requests.get(
            f"{base_url}/api/v1/orders", params=params, headers=account.headers, timeout=TIMEOUT_S
        )
    )


def all_orders(base_url: str, account: Account, **params: Any) -> list[dict[str, Any]]:
    """Every page of a list, followed through nextCursor."""
    orders: list[dict[str, Any]] = []
    cursor = None
    while True:
        query = {**params, "limit": 100, **({"cursor": cursor} if cursor else {})}
        response = list_orders(base_url, account, **query)
        assert response.status_code == 200, response.text
        page = response.json()
        orders.extend(page["items"])
        cursor = page["nextCursor"]
        if cursor is None:
            return orders


def stock_of(product_service_url: str, product: dict[str, Any]) -> int:
    response = requests.get(
        f"{product_service_url}/api/v1/products/{product['id']}", timeout=TIMEOUT_S
    )
    assert response.status_code == 200, response.text
    return int(response.json()["stock"])


def assert_problem(response: requests.Response, status: int) -> dict[str, Any]:
    """An order service problem+json answer with `status`, as its document describes it."""
    assert response.status_code == status, (response.status_code, response.text)
    conforming(response)
    assert response.headers["Content-Type"].startswith(PROBLEM), response.headers
    problem: dict[str, Any] = response.json()
    assert problem["status"] == status
    assert {"type", "title", "detail"} <= problem.keys()
    return problem


def error_fields(problem: dict[str, Any]) -> set[str]:
    return {error["field"] for error in problem.get("errors", [])}


def random_id() -> str:
    return str(uuid.uuid4())


def all_at_once(calls: Sequence[Callable[[], T]]) -> list[T]:
    """Runs every call on its own thread, released together by a barrier; results in order."""
    barrier = threading.Barrier(len(calls))
    results: list[Any] = [None] * len(calls)

    def run(index: int, call: Callable[[], T]) -> None:
        barrier.wait()
        try:
            results[index] = call()
        except Exception as exc:
            results[index] = exc

    threads = [threading.Thread(target=run, args=(i, c)) for i, c in enumerate(calls)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    for result in results:
        if isinstance(result, Exception):
            raise result
    return results
