"""Schemathesis drives the running order service with its own OpenAPI document, as a customer."""

from __future__ import annotations

import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.specs.openapi.checks import positive_data_acceptance

from tests.e2e.orders.test_orders_api import SPEC

pytestmark = pytest.mark.e2e
schema = schemathesis.openapi.from_path(str(SPEC))


def _names_unknown_things(case) -> bool:
    """Well-formed yet unknown references are refused with 422 by design: an opaque cursor this
    service never issued, or an order naming products that do not exist."""
    query = case.query or {}
    return "cursor" in query or case.operation.definition.raw.get("operationId") == "placeOrder"


@schema.parametrize()
@settings(max_examples=30, deadline=None, suppress_health_check=list(HealthCheck))
def test_order_service_conforms_to_its_openapi_document(case, order_service, customer):
    excluded = [positive_data_acceptance] if _names_unknown_things(case) else []
    case.call_and_validate(
        base_url=order_service.url, headers=customer.headers, excluded_checks=excluded
    )
