"""The order section of API.md, row by row, against the running services on MySQL."""

from __future__ import annotations

import json
import time
import uuid
from datetime import datetime, timedelta
from functools import partial
from typing import Any

import pytest
import requests

from tests.e2e.conftest import Account
from tests.e2e.orders.shop import (
    SPEC,
    all_at_once,
    all_orders,
    assert_problem,
    conforming,
    error_fields,
    get_order,
    line,
    list_orders,
    place_order,
    placed,
    random_id,
    stock_of,
    transition,
)
from tests.support.events import EVENT_BODY_FIELDS

pytestmark = pytest.mark.e2e


def by_product(items: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return sorted(items, key=lambda item: item["productId"])


# --- placing ----------------------------------------------------------------------------------


def test_a_customer_places_an_order_priced_by_the_catalog(
    order_service, product_service, customer, new_product
):
    desk, pen = new_product(price="19.99", stock=10), new_product(price="0.05", stock=10)

    response = place_order(order_service.url, customer, [line(desk, 2), line(pen, 3)])

    assert response.status_code == 201, response.text
    order = response.json()
    assert response.headers["Location"].endswith(f"/api/v1/orders/{order['id']}")
    assert order["userId"] == customer.id
    assert order["status"] == "PENDING"
    assert order["totalAmount"] == "40.13"
    assert by_product(order["items"]) == by_product(
        [
            {"productId": desk["id"], "name": desk["name"], "quantity": 2, "price": "19.99"},
            {"productId": pen["id"], "name": pen["name"], "quantity": 3, "price": "0.05"},
        ]
    )
    assert str(uuid.UUID(order["id"])) == order["id"]
    assert uuid.UUID(order["id"]).version == 7
    for stamp in (order["createdAt"], order["updatedAt"]):
        assert datetime.fromisoformat(stamp).utcoffset() == timedelta(0), stamp
    assert stock_of(product_service.url, desk) == 8
    assert stock_of(product_service.url, pen) == 7
    fetched = get_order(order_service.url, customer, order["id"])
    assert fetched.status_code == 200
    assert fetched.json() == order


def test_fifty_items_and_a_quantity_of_a_thousand_are_allowed(order_service, admin, new_product):
    products = [new_product(price="0.01", stock=1000) for _ in range(50)]
    items = [line(products[0], 1000)] + [line(p) for p in products[1:]]
    response = place_order(order_service.url, admin, items)
    assert response.status_code == 201, response.text
    assert len(response.json()["items"]) == 50
    assert response.json()["totalAmount"] == "10.49"


def test_the_client_cannot_set_prices_or_totals(order_service, customer, new_product):
    product = new_product(price="5.00")
    priced = {**line(product), "price": "0.01"}
    assert_problem(place_order(order_service.url, customer, [priced]), 422)
    response = requests.post(
        f"{order_service.url}/api/v1/orders",
        json={"items": [line(product)], "totalAmount": "0.01"},
        headers=customer.headers,
        timeout=10,
    )
    assert_problem(response, 422)


def test_a_customer_orders_for_themselves_only(
    order_service, product_service, customer, new_customer, new_product
):
    product = new_product(stock=5)
    own = place_order(order_service.url, customer, [line(product)], user_id=customer.id)
    assert own.status_code == 201, own.text
    assert own.json()["userId"] == customer.id

    someone = new_customer()
    assert_problem(
        place_order(order_service.url, customer, [line(product)], user_id=someone.id), 403
    )
    assert stock_of(product_service.url, product) == 4
    assert list_orders(order_service.url, someone).json()["items"] == []


def test_an_admin_orders_for_anyone_and_for_themselves(
    order_service, admin, new_customer, new_product
):
    product = new_product()
    buyer = new_customer()
    for_buyer = place_order(order_service.url, admin, [line(product)], user_id=buyer.id)
    assert for_buyer.status_code == 201, for_buyer.text
    assert for_buyer.json()["userId"] == buyer.id
    assert get_order(order_service.url, buyer, for_buyer.json()["id"]).status_code == 200

    for_self = place_order(order_service.url, admin, [line(product)])
    assert for_self.status_code == 201, for_self.text
    assert for_self.json()["userId"] == admin.id


def test_an_unknown_user_is_422_and_nothing_is_kept(
    order_service, product_service, admin, new_product
):
    product = new_product(stock=5)
    nobody = random_id()
    problem = assert_problem(
        place_order(order_service.url, admin, [line(product)], user_id=nobody), 422
    )
    assert "userId" in error_fields(problem)
    assert stock_of(product_service.url, product) == 5
    assert list_orders(order_service.url, admin, userId=nobody).json()["items"] == []


def test_an_unknown_product_is_422_and_nothing_is_kept(
    order_service, product_service, new_customer, new_product
):
    buyer = new_customer()
    product = new_product(stock=5)
    response = place_order(order_service.url, buyer, [line(product, 2), line({"id": random_id()})])
    problem = assert_problem(response, 422)
    assert "items.1.productId" in error_fields(problem)
    assert stock_of(product_service.url, product) == 5
    assert list_orders(order_service.url, buyer).json()["items"] == []


def test_a_total_too_large_to_record_is_422_and_nothing_is_kept(
    order_service, product_service, new_customer, new_product
):
    buyer = new_customer()
    # Each price is storable; twice the dearest is more than DECIMAL(12,2) holds.
    dearest = new_product(price="9999999999.99", stock=10)
    problem = assert_problem(place_order(order_service.url, buyer, [line(dearest, 2)]), 422)
    assert "items" in error_fields(problem)
    assert stock_of(product_service.url, dearest) == 10
    assert list_orders(order_service.url, buyer).json()["items"] == []


def test_an_order_keeps_the_price_it_was_placed_at(
    order_service, product_service, admin, customer, new_product
):
    product = new_product(price="10.00")
    key = random_id()
    order = place_order(order_service.url, customer, [line(product, 2)], key=key).json()
    repriced = requests.patch(
        f"{product_service.url}/api/v1/products/{product['id']}",
        json={"price": "25.00"},
        headers=admin.headers,
        timeout=10,
    )
    assert repriced.status_code == 200, repriced.text

    for seen in (
        get_order(order_service.url, customer, order["id"]).json(),
        place_order(order_service.url, customer, [line(product, 2)], key=key).json(),
    ):
        assert seen["totalAmount"] == "20.00"
        assert seen["items"][0]["price"] == "10.00"
    later = placed(order_service.url, customer, [line(product, 2)])
    assert (later["totalAmount"], later["items"][0]["price"]) == ("50.00", "25.00")


def test_an_archived_product_cannot_be_ordered_but_its_orders_still_resolve(
    order_service, product_service, admin, customer, new_product
):
    product = new_product(stock=10)
    order = placed(order_service.url, customer, [line(product, 3)])
    archived = requests.delete(
        f"{product_service.url}/api/v1/products/{product['id']}", headers=admin.headers, timeout=10
    )
    assert archived.status_code == 204, archived.text

    problem = assert_problem(place_order(order_service.url, customer, [line(product)]), 422)
    assert "items.0.productId" in error_fields(problem)
    assert get_order(order_service.url, customer, order["id"]).status_code == 200
    cancelled = transition(order_service.url, customer, order["id"], "cancel")
    assert cancelled.status_code == 200, cancelled.text
    assert cancelled.json()["cancelReason"] == "customer"
    assert stock_of(product_service.url, product) == 10


def test_short_stock_is_409_naming_every_short_item_and_nothing_is_kept(
    order_service, product_service, new_customer, new_product
):
    buyer = new_customer()
    scarce, plenty, rare = new_product(stock=2), new_product(stock=5), new_product(stock=0)
    response = place_order(
        order_service.url, buyer, [line(scarce, 3), line(plenty, 1), line(rare, 1)]
    )
    problem = assert_problem(response, 409)
    assert by_product(problem["items"]) == by_product(
        [
            {"productId": scarce["id"], "quantity": 3, "available": 2},
            {"productId": rare["id"], "quantity": 1, "available": 0},
        ]
    )
    assert stock_of(product_service.url, scarce) == 2
    assert stock_of(product_service.url, plenty) == 5
    assert list_orders(order_service.url, buyer).json()["items"] == []


def test_the_service_role_may_not_place_orders(order_service, service_account, new_product):
    response = place_order(order_service.url, service_account, [line(new_product())])
    assert_problem(response, 403)


# --- validation -------------------------------------------------------------------------------


def _invalid_bodies(product_id: str) -> list[tuple[str, object]]:
    one = {"productId": product_id, "quantity": 1}
    return [
        ("no items", {}),
        ("empty items", {"items": []}),
        ("51 items", {"items": [{"productId": random_id(), "quantity": 1} for _ in range(51)]}),
        ("quantity 0", {"items": [{**one, "quantity": 0}]}),
        ("quantity 1001", {"items": [{**one, "quantity": 1001}]}),
        ("negative quantity", {"items": [{**one, "quantity": -1}]}),
        ("fractional quantity", {"items": [{**one, "quantity": 1.5}]}),
        ("quantity as text", {"items": [{**one, "quantity": "1"}]}),
        ("a product twice", {"items": [one, {**one, "quantity": 2}]}),
        ("product id not a uuid", {"items": [{"productId": "desk", "quantity": 1}]}),
        ("no product id", {"items": [{"quantity": 1}]}),
        ("user id not a uuid", {"userId": "someone", "items": [one]}),
        ("items not a list", {"items": one}),
        ("an array body", [one]),
        ("unknown field", {"items": [one], "coupon": "FREE"}),
    ]


def test_invalid_bodies_are_422_and_reserve_nothing(
    order_service, product_service, customer, new_product
):
    product = new_product(stock=7)
    for label, body in _invalid_bodies(product["id"]):
        response = requests.post(
            f"{order_service.url}/api/v1/orders", json=body, headers=customer.headers, timeout=10
        )
        assert response.status_code == 422, (label, response.status_code, response.text)
        assert_problem(response, 422)
    assert stock_of(product_service.url, product) == 7


def test_malformed_json_is_400(order_service, customer):
    response = requests.post(
        f"{order_service.url}/api/v1/orders",
        data=b'{"items": [',
        headers={**customer.headers, "Content-Type": "application/json"},
        timeout=10,
    )
    assert_problem(response, 400)


def test_a_body_that_is_not_json_is_415(order_service, customer, new_product):
    response = requests.post(
        f"{order_service.url}/api/v1/orders",
        data=f'{{"items": [{{"productId": "{new_product()["id"]}", "quantity": 1}}]}}',
        headers={**customer.headers, "Content-Type": "text/plain"},
        timeout=10,
    )
    assert_problem(response, 415)


def test_a_huge_body_is_413(order_service, customer):
    padding = "x" * (256 * 1024)
    response = requests.post(
        f"{order_service.url}/api/v1/orders",
        json={"items": [{"productId": random_id(), "quantity": 1}], "padding": padding},
        headers=customer.headers,
        timeout=10,
    )
    assert_problem(response, 413)


# --- who sees what ----------------------------------------------------------------------------


def test_an_order_is_visible_to_its_owner_and_admins_only(
    order_service, admin, service_account, new_customer, new_product
):
    owner, stranger = new_customer(), new_customer()
    order = placed(order_service.url, owner, [line(new_product())])

    assert get_order(order_service.url, owner, order["id"]).json() == order
    assert get_order(order_service.url, admin, order["id"]).json() == order
    assert_problem(get_order(order_service.url, stranger, order["id"]), 404)
    response = get_order(order_service.url, service_account, order["id"])
    assert response.status_code in {403, 404}, response.text
    assert_problem(response, response.status_code)


def test_another_users_order_cannot_be_paid_or_cancelled(order_service, new_customer, new_product):
    owner, stranger = new_customer(), new_customer()
    order = placed(order_service.url, owner, [line(new_product())])
    assert_problem(transition(order_service.url, stranger, order["id"], "pay"), 404)
    assert_problem(transition(order_service.url, stranger, order["id"], "cancel"), 404)
    assert get_order(order_service.url, owner, order["id"]).json()["status"] == "PENDING"


@pytest.mark.parametrize(
    "order_id",
    [
        "not-a-uuid",
        "12345",
        "0192F0C5-1B6E-7A3C-9D2E-4F5A6B7C8D9E",  # a UUID, but not in canonical lowercase form
        "0192f0c5-1b6e-7a3c-9d2e-4f5a6b7c8d9e",  # canonical, but no such order
    ],
)
def test_unknown_and_malformed_order_ids_are_404(order_service, admin, order_id):
    assert_problem(get_order(order_service.url, admin, order_id), 404)
    assert_problem(transition(order_service.url, admin, order_id, "pay"), 404)
    assert_problem(transition(order_service.url, admin, order_id, "cancel"), 404)


def test_every_order_endpoint_needs_a_valid_token(order_service, customer, new_product):
    order = placed(order_service.url, customer, [line(new_product())])
    calls = [
        ("POST", "/api/v1/orders", {"items": [{"productId": random_id(), "quantity": 1}]}),
        ("GET", "/api/v1/orders", None),
        ("GET", f"/api/v1/orders/{order['id']}", None),
        ("POST", f"/api/v1/orders/{order['id']}/pay", None),
        ("POST", f"/api/v1/orders/{order['id']}/cancel", None),
    ]
    for headers in ({}, {"Authorization": "Bearer a.b.c"}, {"Authorization": "Basic Zm9vOmJhcg=="}):
        for method, path, body in calls:
            response = requests.request(
                method, f"{order_service.url}{path}", json=body, headers=headers, timeout=10
            )
            assert response.status_code == 401, (method, path, headers, response.text)
            assert_problem(response, 401)
    assert get_order(order_service.url, customer, order["id"]).json()["status"] == "PENDING"


def test_a_customer_lists_only_their_own_orders(order_service, admin, new_customer, new_product):
    alice, bob = new_customer(), new_customer()
    product = new_product()
    # Newest first.
    alices = [placed(order_service.url, alice, [line(product)])["id"] for _ in range(2)][::-1]
    bobs = [placed(order_service.url, bob, [line(product)])["id"]]

    listed = list_orders(order_service.url, alice)
    assert listed.status_code == 200, listed.text
    assert [o["id"] for o in listed.json()["items"]] == alices
    assert {o["userId"] for o in listed.json()["items"]} == {alice.id}
    assert [o["id"] for o in list_orders(order_service.url, bob).json()["items"]] == bobs
    own = list_orders(order_service.url, alice, userId=alice.id)
    assert [o["id"] for o in own.json()["items"]] == alices
    assert_problem(list_orders(order_service.url, alice, userId=bob.id), 403)

    by_admin = list_orders(order_service.url, admin, userId=alice.id)
    assert [o["id"] for o in by_admin.json()["items"]] == alices


def test_an_admin_lists_everyones_orders_and_filters_by_user_and_status(
    order_service, admin, new_customer, new_product
):
    alice, bob = new_customer(), new_customer()
    product = new_product()
    first = placed(order_service.url, alice, [line(product)])
    second = placed(order_service.url, alice, [line(product)])
    third = placed(order_service.url, bob, [line(product)])
    assert transition(order_service.url, alice, first["id"], "pay").status_code == 200
    assert transition(order_service.url, bob, third["id"], "cancel").status_code == 200

    def ids(**params: str) -> list[str]:
        response = list_orders(order_service.url, admin, **params)
        assert response.status_code == 200, response.text
        return [o["id"] for o in response.json()["items"]]

    assert ids(userId=alice.id) == [second["id"], first["id"]]  # newest first
    assert ids(userId=alice.id, status="PAID") == [first["id"]]
    assert ids(userId=alice.id, status="PENDING") == [second["id"]]
    assert ids(userId=alice.id, status="CANCELLED") == []
    assert ids(userId=bob.id, status="CANCELLED") == [third["id"]]
    assert [
        o["id"] for o in list_orders(order_service.url, alice, status="PAID").json()["items"]
    ] == [first["id"]]
    # Unfiltered, an admin's list holds everyone's orders.
    newest = {o["id"] for o in all_orders(order_service.url, admin)}
    assert {first["id"], second["id"], third["id"]} <= newest


def test_lists_page_by_keyset_stable_under_inserts(order_service, new_customer, new_product):
    buyer = new_customer()
    product = new_product()
    placed_ids = [placed(order_service.url, buyer, [line(product)])["id"] for _ in range(5)]

    newest_first = placed_ids[::-1]
    first = list_orders(order_service.url, buyer, limit=2).json()
    assert [o["id"] for o in first["items"]] == newest_first[:2]
    assert isinstance(first["nextCursor"], str)
    # An order placed between pages is newer than every page still to come: it shifts none of
    # them, and shows up on a fresh first page.
    later = placed(order_service.url, buyer, [line(product)])["id"]
    seen = [o["id"] for o in first["items"]]
    cursor = first["nextCursor"]
    while cursor is not None:
        page = list_orders(order_service.url, buyer, limit=2, cursor=cursor).json()
        assert len(page["items"]) <= 2
        seen += [o["id"] for o in page["items"]]
        cursor = page["nextCursor"]
    assert seen == newest_first

    default = list_orders(order_service.url, buyer).json()
    assert [o["id"] for o in default["items"]] == [later, *newest_first]
    assert default["nextCursor"] is None


@pytest.mark.parametrize(
    "params",
    [
        {"limit": "0"},
        {"limit": "101"},
        {"limit": "ten"},
        {"cursor": "not-a-cursor"},
        {"status": "SHIPPED"},
        {"status": "pending"},
    ],
)
def test_bad_list_parameters_are_422(order_service, admin, params):
    assert_problem(list_orders(order_service.url, admin, **params), 422)


# --- pay and cancel ---------------------------------------------------------------------------


def test_pay_is_repeatable_and_a_paid_order_cannot_be_cancelled(
    order_service, product_service, customer, new_product
):
    product = new_product(stock=10)
    order = placed(order_service.url, customer, [line(product, 3)])

    paid = transition(order_service.url, customer, order["id"], "pay")
    assert paid.status_code == 200, paid.text
    assert paid.json()["status"] == "PAID"
    assert paid.json()["id"] == order["id"]
    again = transition(order_service.url, customer, order["id"], "pay")
    assert again.status_code == 200, again.text
    assert again.json()["status"] == "PAID"
    assert_problem(transition(order_service.url, customer, order["id"], "cancel"), 409)
    assert get_order(order_service.url, customer, order["id"]).json()["status"] == "PAID"
    assert stock_of(product_service.url, product) == 7


def test_cancel_gives_the_stock_back_exactly_once_and_a_cancelled_order_cannot_be_paid(
    order_service, product_service, customer, new_product
):
    product = new_product(stock=10)
    order = placed(order_service.url, customer, [line(product, 3)])
    assert stock_of(product_service.url, product) == 7

    cancelled = transition(order_service.url, customer, order["id"], "cancel")
    assert cancelled.status_code == 200, cancelled.text
    assert cancelled.json()["status"] == "CANCELLED"
    assert stock_of(product_service.url, product) == 10
    again = transition(order_service.url, customer, order["id"], "cancel")
    assert again.status_code == 200, again.text
    assert again.json()["status"] == "CANCELLED"
    assert stock_of(product_service.url, product) == 10
    assert_problem(transition(order_service.url, customer, order["id"], "pay"), 409)
    assert get_order(order_service.url, customer, order["id"]).json()["status"] == "CANCELLED"


def test_an_admin_pays_and_cancels_anyones_order(order_service, admin, new_customer, new_product):
    buyer = new_customer()
    product = new_product()
    to_pay = placed(order_service.url, buyer, [line(product)])
    to_cancel = placed(order_service.url, buyer, [line(product)])
    assert transition(order_service.url, admin, to_pay["id"], "pay").json()["status"] == "PAID"
    cancelled = transition(order_service.url, admin, to_cancel["id"], "cancel")
    assert (cancelled.json()["status"], cancelled.json()["cancelReason"]) == ("CANCELLED", "admin")
    assert get_order(order_service.url, buyer, to_pay["id"]).json()["cancelReason"] is None


# --- idempotency ------------------------------------------------------------------------------


def test_a_repeat_with_the_same_key_and_body_returns_the_same_order(
    order_service, product_service, new_customer, new_product
):
    buyer = new_customer()
    product = new_product(stock=10)
    key = random_id()
    first = place_order(order_service.url, buyer, [line(product, 2)], key=key)
    assert first.status_code == 201, first.text
    repeat = place_order(order_service.url, buyer, [line(product, 2)], key=key)
    assert repeat.status_code == 200, repeat.text
    assert repeat.json()["id"] == first.json()["id"]
    assert stock_of(product_service.url, product) == 8

    other_body = place_order(order_service.url, buyer, [line(product, 3)], key=key)
    assert_problem(other_body, 422)
    assert stock_of(product_service.url, product) == 8
    assert len(list_orders(order_service.url, buyer).json()["items"]) == 1


def test_keys_are_scoped_to_the_user_and_no_key_means_a_new_order(
    order_service, product_service, new_customer, new_product
):
    alice, bob = new_customer(), new_customer()
    product = new_product(stock=10)
    key = "shared-key"
    for_alice = place_order(order_service.url, alice, [line(product)], key=key)
    for_bob = place_order(order_service.url, bob, [line(product)], key=key)
    assert (for_alice.status_code, for_bob.status_code) == (201, 201)
    assert for_alice.json()["id"] != for_bob.json()["id"]

    first = place_order(order_service.url, alice, [line(product)])
    second = place_order(order_service.url, alice, [line(product)])
    assert (first.status_code, second.status_code) == (201, 201)
    assert first.json()["id"] != second.json()["id"]
    assert stock_of(product_service.url, product) == 6


def test_keys_that_differ_only_in_case_are_different_keys(
    order_service, product_service, new_customer, new_product
):
    buyer = new_customer()
    product = new_product(stock=10)
    upper = place_order(order_service.url, buyer, [line(product)], key="Order-Key-A")
    lower = place_order(order_service.url, buyer, [line(product)], key="order-key-a")
    other_body = place_order(order_service.url, buyer, [line(product, 2)], key="ORDER-KEY-A")
    assert [r.status_code for r in (upper, lower, other_body)] == [201, 201, 201], [
        r.text for r in (upper, lower, other_body)
    ]
    assert len({r.json()["id"] for r in (upper, lower, other_body)}) == 3
    assert stock_of(product_service.url, product) == 6


def test_idempotency_keys_are_1_to_255_characters(order_service, customer, new_product):
    product = new_product()
    longest = place_order(order_service.url, customer, [line(product)], key="k" * 255)
    assert longest.status_code == 201, longest.text
    for bad in ("k" * 256, "", "caf\u00e9"):
        response = place_order(order_service.url, customer, [line(product)], key=bad)
        assert "Idempotency-Key" in error_fields(assert_problem(response, 422)), bad


def test_a_key_whose_attempt_failed_can_be_used_again(
    order_service, product_service, admin, customer, new_product
):
    product = new_product(stock=1)
    key = random_id()
    assert_problem(place_order(order_service.url, customer, [line(product, 2)], key=key), 409)
    restocked = requests.patch(
        f"{product_service.url}/api/v1/products/{product['id']}",
        json={"stock": 5},
        headers=admin.headers,
        timeout=10,
    )
    assert restocked.status_code == 200, restocked.text
    retry = place_order(order_service.url, customer, [line(product, 2)], key=key)
    assert retry.status_code == 201, retry.text
    assert stock_of(product_service.url, product) == 3


# --- events -----------------------------------------------------------------------------------


def test_each_state_change_publishes_its_event(
    order_service, order_worker, order_events, customer, new_product
):
    product = new_product(price="2.50")
    request_id = f"e2e-{random_id()}"
    response = place_order(
        order_service.url, customer, [line(product, 4)], headers={"X-Request-ID": request_id}
    )
    assert response.status_code == 201, response.text
    assert response.headers["X-Request-ID"] == request_id
    order = response.json()

    (created,) = order_events.wait_for_types(order["id"], ["order_created"]).values()
    assert created.attributes["eventType"] == "order_created"
    assert created.attributes.get("requestId") == request_id
    body = created.body
    assert set(body) == EVENT_BODY_FIELDS
    assert body["eventType"] == "order_created"
    assert body["orderId"] == order["id"]
    assert body["userId"] == customer.id
    assert body["status"] == "PENDING"
    assert body["totalAmount"] == "10.00"
    assert body["items"] == [
        {"productId": product["id"], "name": product["name"], "quantity": 4, "price": "2.50"}
    ]
    assert body["shippingAddress"] is None
    assert body["expiresAt"] == order["expiresAt"] is not None
    assert body["occurredAt"]

    assert transition(order_service.url, customer, order["id"], "pay").status_code == 200
    assert transition(order_service.url, customer, order["id"], "pay").status_code == 200
    events = order_events.wait_for_types(order["id"], ["order_created", "order_paid"])
    (paid,) = [e for e in events.values() if e.event_type == "order_paid"]
    assert paid.attributes["eventType"] == "order_paid"
    assert paid.body["status"] == "PAID"
    assert paid.body["expiresAt"] is None
    assert paid.body["orderId"] == order["id"]
    assert paid.body["eventId"] != body["eventId"]
    # The repeated pay changed nothing, so it published nothing either.
    time.sleep(1.0)
    assert order_events.event_types(order["id"]) == ["order_created", "order_paid"]


def test_cancel_publishes_order_cancelled_once(
    order_service, order_worker, order_events, customer, new_product
):
    order = placed(order_service.url, customer, [line(new_product(), 1)])
    assert transition(order_service.url, customer, order["id"], "cancel").status_code == 200
    assert transition(order_service.url, customer, order["id"], "cancel").status_code == 200
    events = order_events.wait_for_types(order["id"], ["order_cancelled", "order_created"])
    (cancelled,) = [e for e in events.values() if e.event_type == "order_cancelled"]
    assert cancelled.attributes["eventType"] == "order_cancelled"
    assert cancelled.body["status"] == "CANCELLED"
    assert cancelled.body["userId"] == customer.id
    assert cancelled.body["reason"] == "customer"
    assert set(cancelled.body) == EVENT_BODY_FIELDS | {"reason"}
    time.sleep(1.0)
    assert order_events.event_types(order["id"]) == ["order_cancelled", "order_created"]


def test_concurrent_orders_each_keep_their_own_request_id(
    order_service, order_worker, order_events, customer, new_product
):
    """The order service serves its requests concurrently in one process (gevent) and sends
    their reservations together: each request's id must still be its own, in its answer and
    in its order's event."""
    products = [new_product() for _ in range(2)]
    request_ids = [f"e2e-concurrent-{random_id()}" for _ in range(12)]
    answers = all_at_once(
        [
            partial(
                place_order,
                order_service.url,
                customer,
                [line(products[index % 2])],
                headers={"X-Request-ID": request_id},
            )
            for index, request_id in enumerate(request_ids)
        ]
    )

    for request_id, answer in zip(request_ids, answers, strict=True):
        assert answer.status_code == 201, answer.text
        assert answer.headers["X-Request-ID"] == request_id
        order_id = answer.json()["id"]
        (created,) = order_events.wait_for_types(order_id, ["order_created"]).values()
        assert created.attributes.get("requestId") == request_id


def test_the_request_id_travels_to_every_service_an_order_calls(
    order_service, user_service, product_service, new_customer, new_product
):
    buyer = new_customer()
    product = new_product()
    request_id = f"e2e-trace-{random_id()}"
    response = place_order(
        order_service.url, buyer, [line(product)], headers={"X-Request-ID": request_id}
    )
    assert response.status_code == 201, response.text

    def paths_logged(running: Any) -> set[str]:
        lines = [json.loads(text) for text in running.log_text().splitlines() if request_id in text]
        assert all(entry["request_id"] == request_id for entry in lines), lines
        return {entry["path"] for entry in lines if "path" in entry}

    assert "/api/v1/orders" in paths_logged(order_service)
    assert f"/api/v1/users/{buyer.id}" in paths_logged(user_service)
    assert "/api/v1/reservations/batch" in paths_logged(product_service)


# --- operations -------------------------------------------------------------------------------


def test_health_readiness_metrics_and_the_document(
    order_service, order_worker, customer, new_product
):
    def get(path: str) -> requests.Response:
        return conforming(requests.get(f"{order_service.url}{path}", timeout=20))

    order = placed(order_service.url, customer, [line(new_product())])
    assert get_order(order_service.url, customer, order["id"]).status_code == 200

    assert get("/health").json() == {"status": "ok"}
    ready = get("/health/ready")
    assert ready.status_code == 200, ready.text
    assert ready.json() == {"status": "ok", "queue": "ok"}
    metrics = get("/metrics")
    assert metrics.status_code == 200
    assert metrics.headers["Content-Type"].startswith("text/plain")
    series = [text for text in metrics.text.splitlines() if not text.startswith("#")]

    def counted(route: str, status: str) -> bool:
        return any(
            text.startswith("http_requests_total{")
            and f'route="{route}"' in text
            and f'status="{status}"' in text
            for text in series
        )

    # One series per route (the rule, not the path) and status, with latency histograms.
    assert counted("/api/v1/orders", "201")
    assert counted("/api/v1/orders/<id:order_id>", "200")
    assert not any(order["id"] in text for text in series)
    assert any(text.startswith("http_request_duration_seconds_bucket{") for text in series)
    # What concurrent orders share: the reservation call and the two commits of placing one.
    for batch in ("reservations", "journal", "orders"):
        assert any(text.startswith(f'shop_batch_size_count{{batch="{batch}"}}') for text in series)
    document = get("/openapi.yaml")
    assert document.status_code == 200
    assert document.text == SPEC.read_text(encoding="utf-8")


# --- what an order keeps, and its details -------------------------------------------------------


def test_a_pending_order_has_a_payment_deadline_that_paying_clears(
    order_service, customer, new_product
):
    order = placed(order_service.url, customer, [line(new_product())])
    created = datetime.fromisoformat(order["createdAt"])
    # ORDER_PAYMENT_TIMEOUT_S's default.
    assert datetime.fromisoformat(order["expiresAt"]) - created == timedelta(seconds=1800)
    assert order["shippingAddress"] is None
    paid = transition(order_service.url, customer, order["id"], "pay").json()
    assert paid["expiresAt"] is None


def test_an_address_that_is_not_the_customers_is_422_and_reserves_nothing(
    order_service, product_service, customer, new_product
):
    product = new_product(stock=4)
    response = conforming(
        requests.post(
            f"{order_service.url}/api/v1/orders",
            json={"items": [line(product)], "shippingAddressId": random_id()},
            headers=customer.headers,
            timeout=10,
        )
    )
    assert error_fields(assert_problem(response, 422)) == {"shippingAddressId"}
    assert stock_of(product_service.url, product) == 4


def test_details_show_the_order_with_its_user_as_the_user_service_has_them(
    order_service, admin, new_customer, new_product, user_service
):
    buyer, stranger = new_customer(), new_customer()
    order = placed(order_service.url, buyer, [line(new_product())])

    def details(account: Account) -> requests.Response:
        return conforming(
            requests.get(
                f"{order_service.url}/api/v1/orders/{order['id']}/details",
                headers=account.headers,
                timeout=10,
            )
        )

    user = requests.get(
        f"{user_service.url}/api/v1/users/{buyer.id}", headers=buyer.headers, timeout=10
    ).json()
    for account in (buyer, admin):
        shown = details(account)
        assert shown.status_code == 200, shown.text
        assert shown.json() == {
            **get_order(order_service.url, buyer, order["id"]).json(),
            "user": {"id": buyer.id, "username": user["username"], "email": user["email"]},
        }
    assert_problem(details(stranger), 404)
