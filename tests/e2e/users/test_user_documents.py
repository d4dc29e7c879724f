"""The running user service's answers to the new calls, each held to its openapi.yaml.

Schemathesis (test_user_schemathesis) mostly meets ids that do not exist; this walks one
account through its own profile and address book, so the successful answers are checked too.
"""

from __future__ import annotations

import requests

from tests.support.contract import service_schema

SCHEMA = service_schema("user_service/openapi.yaml")
ADDRESS = {
    "recipient": "Ada Lovelace",
    "line1": "12 St James's Square",
    "city": "London",
    "postalCode": "SW1Y 4JH",
    "country": "GB",
}


def _checked(path: str, method: str, response: requests.Response, status: int) -> None:
    assert response.status_code == status, response.text
    SCHEMA[path][method].validate_response(response)


def test_profile_and_address_book_answers_match_the_document(user_service, new_customer):
    customer = new_customer()
    user = f"{user_service.url}/api/v1/users/{customer.id}"
    headers = customer.headers

    patched = requests.patch(
        user,
        json={"phone": "+14155550123", "currentPassword": "customer-password"},
        headers=headers,
        timeout=10,
    )
    _checked("/api/v1/users/{id}", "PATCH", patched, 200)

    book = "/api/v1/users/{id}/addresses"
    created = requests.post(f"{user}/addresses", json=ADDRESS, headers=headers, timeout=10)
    _checked(book, "POST", created, 201)
    one = f"{book}/{{addressId}}"
    address_url = f"{user_service.url}{created.headers['Location']}"
    _checked(one, "GET", requests.get(address_url, headers=headers, timeout=10), 200)
    _checked(book, "GET", requests.get(f"{user}/addresses", headers=headers, timeout=10), 200)
    edited = requests.patch(address_url, json={"line2": "Flat 3"}, headers=headers, timeout=10)
    _checked(one, "PATCH", edited, 200)
    _checked(one, "DELETE", requests.delete(address_url, headers=headers, timeout=10), 204)
    _checked(
        "/api/v1/users/{id}", "DELETE", requests.delete(user, headers=headers, timeout=10), 204
    )
