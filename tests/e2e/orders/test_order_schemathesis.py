"""Schemathesis drives the running order service with its own OpenAPI document, as a customer.

Generated ids name nothing, so a few are swapped for real ones before the call: product ids in
an order (each distinct generated id for a distinct real product, so a duplicate stays one),
and half the order ids in paths. Then valid orders are placed, paid and cancelled for real, and
their answers are checked against the document too, not only the 404s and 422s.
"""

from __future__ import annotations

import re
import uuid
from typing import Any

import pytest
from hypothesis import HealthCheck, settings
from schemathesis.specs.openapi.checks import positive_data_acceptance

from common.ids import CANONICAL_UUID_PATTERN
from tests.e2e.orders.shop import SPEC, line, placed
from tests.support.contract import service_schema

pytestmark = pytest.mark.e2e
schema = service_schema(str(SPEC))
CANONICAL_UUID = re.compile(CANONICAL_UUID_PATTERN)
VALID_KEY = re.compile(r"^[\x21-\x7e]([\x20-\x7e]*[\x21-\x7e])?$")


@pytest.fixture(scope="session")
def real_things(order_service, customer, new_product) -> dict[str, Any]:
    products = [new_product(stock=1_000_000_000) for _ in range(50)]
    order = placed(order_service.url, customer, [line(products[0])])
    return {"product_ids": [p["id"] for p in products], "order_id": order["id"]}


def _with_real_products(body: Any, product_ids: list[str]) -> bool:
    """Swaps well-formed product ids for real ones in place; True if a product repeats."""
    items = body.get("items") if isinstance(body, dict) else None
    if not isinstance(items, list):
        return False
    real: dict[str, str] = {}
    for item in items:
        generated = item.get("productId") if isinstance(item, dict) else None
        if isinstance(generated, str) and CANONICAL_UUID.match(generated):
            real.setdefault(generated, product_ids[len(real) % len(product_ids)])
            item["productId"] = real[generated]
    named = [i["productId"] for i in items if isinstance(i, dict) and "productId" in i]
    return len(set(map(str, named))) != len(named)


@schema.parametrize()
@settings(max_examples=30, deadline=None, suppress_health_check=list(HealthCheck))
def test_order_service_conforms_to_its_openapi_document(case, order_service, customer, real_things):
    operation_id = case.operation.definition.raw.get("operationId")
    # An opaque cursor this service never issued is refused with 422 by design.
    unknown_reference = "cursor" in (case.query or {})
    if operation_id == "placeOrder":
        # The document cannot say "each product at most once"; the service refuses it (422).
        unknown_reference |= _with_real_products(case.body, real_things["product_ids"])
        # A generated address id names no address of the customer's: 422 by design.
        unknown_reference |= (
            isinstance(case.body, dict) and case.body.get("shippingAddressId") is not None
        )
        key = (case.headers or {}).get("Idempotency-Key")
        if isinstance(key, str) and VALID_KEY.match(key) and len(key) <= 255:
            # A key reused with another body is 422 by design; each example is a new request.
            case.headers["Idempotency-Key"] = f"{key[:200]}{uuid.uuid4().hex}"
    path_id = (case.path_parameters or {}).get("id")
    if isinstance(path_id, str) and len(path_id) % 2 == 0:
        case.path_parameters["id"] = real_things["order_id"]
    excluded = [positive_data_acceptance] if unknown_reference else []
    case.call_and_validate(
        base_url=order_service.url, headers=customer.headers, excluded_checks=excluded
    )
