"""Schemathesis drives the running user service with its own OpenAPI document."""

from __future__ import annotations

import requests
from hypothesis import HealthCheck, settings

from tests.e2e.conftest import ADMIN
from tests.support.contract import service_schema

schema = service_schema("user_service/openapi.yaml")


@schema.parametrize()
@settings(max_examples=40, deadline=None, suppress_health_check=list(HealthCheck))
def test_user_service_conforms_to_its_openapi_document(case, user_service):
    token = requests.post(
        f"{user_service.url}/api/v1/login",
        json={"username": ADMIN[0], "password": ADMIN[1]},
        timeout=5,
    ).json()["accessToken"]
    case.call_and_validate(base_url=user_service.url, headers={"Authorization": f"Bearer {token}"})
