"""Schemathesis drives the running product service with its own OpenAPI document."""

from __future__ import annotations

from hypothesis import HealthCheck, settings
from schemathesis.specs.openapi.checks import positive_data_acceptance

from product_service.search_words import query_words
from tests.e2e.conftest import ADMIN
from tests.support.contract import service_schema

schema = service_schema("product_service/openapi.yaml")


def _refused_by_design(case) -> bool:
    """Schema-valid requests this service refuses with 422 by design: well-formed yet unknown
    references (an opaque cursor it never issued, a reservation naming products that do not
    exist), batches breaking a rule JSON Schema cannot state (distinct reservation ids,
    at most 100 items over all of them), and a search `q` without words or with too many or
    too long ones (the document states the rule in words)."""
    query = case.query or {}
    operation = case.operation.definition.raw.get("operationId")
    return (
        "cursor" in query
        or operation in ("reserveItems", "reserveBatch")
        or (operation == "searchProducts" and not _answerable(query.get("q")))
    )


def _answerable(q: object) -> bool:
    if not isinstance(q, str):
        return True
    try:
        query_words(q)
    except ValueError:
        return False
    return True


@schema.parametrize()
@settings(max_examples=40, deadline=None, suppress_health_check=list(HealthCheck))
def test_product_service_conforms_to_its_openapi_document(case, product_service, login_token):
    token = login_token(ADMIN)
    excluded = [positive_data_acceptance] if _refused_by_design(case) else []
    case.call_and_validate(
        base_url=product_service.url,
        headers={"Authorization": f"Bearer {token}"},
        excluded_checks=excluded,
    )
