"""An order's shipping address across the real services: the order service reads the customer's
address from the user service with its service token and keeps a copy of it."""

from __future__ import annotations

from typing import Any

import requests

from tests.e2e.conftest import Account
from tests.e2e.orders.shop import conforming, error_fields, line, stock_of

ADDRESS = {
    "label": "home",
    "recipient": "Alice Liddell",
    "line1": "1 Rabbit Hole",
    "city": "Oxford",
    "postalCode": "OX1 1AA",
    "country": "GB",
}
COPIED_FIELDS = ("label", "recipient", "line1", "line2", "city", "region", "postalCode")


def add_address(user_url: str, account: Account) -> dict[str, Any]:
    response = requests.post(
        f"{user_url}/api/v1/users/{account.id}/addresses",
        json=ADDRESS,
        headers=account.headers,
        timeout=10,
    )
    assert response.status_code == 201, response.text
    address: dict[str, Any] = response.json()
    return address


def order_to(order_url: str, account: Account, product: dict[str, Any], address_id: str):
    return conforming(
        requests.post(
            f"{order_url}/api/v1/orders",
            json={"items": [line(product)], "shippingAddressId": address_id},
            headers=account.headers,
            timeout=10,
        )
    )


def test_an_order_keeps_a_copy_of_its_address_that_later_edits_do_not_change(
    order_service, user_service, new_customer, new_product
):
    buyer = new_customer()
    address = add_address(user_service.url, buyer)
    placed = order_to(order_service.url, buyer, new_product(), address["id"])
    assert placed.status_code == 201, placed.text
    shipped_to = placed.json()["shippingAddress"]
    assert {field: shipped_to[field] for field in COPIED_FIELDS} == {
        field: address[field] for field in COPIED_FIELDS
    }
    assert shipped_to["country"] == "GB"

    edited = requests.patch(
        f"{user_service.url}/api/v1/users/{buyer.id}/addresses/{address['id']}",
        json={"line1": "2 Looking-Glass Lane"},
        headers=buyer.headers,
        timeout=10,
    )
    assert edited.status_code == 200, edited.text
    order = requests.get(
        f"{order_service.url}/api/v1/orders/{placed.json()['id']}",
        headers=buyer.headers,
        timeout=10,
    ).json()
    assert order["shippingAddress"] == shipped_to


def test_another_customers_address_is_422_and_reserves_nothing(
    order_service, user_service, product_service, new_customer, new_product
):
    buyer, other = new_customer(), new_customer()
    others_address = add_address(user_service.url, other)
    product = new_product(stock=3)
    refused = order_to(order_service.url, buyer, product, others_address["id"])
    assert refused.status_code == 422, refused.text
    assert error_fields(refused.json()) == {"shippingAddressId"}
    assert stock_of(product_service.url, product) == 3


def test_details_of_a_closed_accounts_order_show_only_its_id(
    order_service, user_service, admin, new_customer, new_product
):
    buyer = new_customer()
    order = order_to(
        order_service.url, buyer, new_product(), add_address(user_service.url, buyer)["id"]
    ).json()
    closed = requests.delete(
        f"{user_service.url}/api/v1/users/{buyer.id}", headers=buyer.headers, timeout=10
    )
    assert closed.status_code == 204, closed.text
    details = conforming(
        requests.get(
            f"{order_service.url}/api/v1/orders/{order['id']}/details",
            headers=admin.headers,
            timeout=10,
        )
    )
    assert details.status_code == 200, details.text
    assert details.json()["user"] == {"id": buyer.id, "closed": True}
    # The order's copy of the address is the business record: closing erases the address
    # book, not what the order was shipped to.
    assert details.json()["shippingAddress"]["recipient"] == ADDRESS["recipient"]
