"""What an order keeps of the moment it was placed (its items' names, a copy of its shipping
address, its payment deadline) and the details view with its user as they are now."""

from __future__ import annotations

import json
from datetime import timedelta

import pytest
import sqlalchemy as sa

from common.errors import NotFound, ServiceUnavailable, Unprocessable
from common.ids import new_id
from order_service.service import OrderService, order_details_representation
from order_service.tables import outbox
from product_service.service import ProductChanges
from tests.integration.orders.conftest import (
    ADMIN,
    CUSTOMER,
    OTHER_CUSTOMER,
    held,
    order_of,
    stock_of,
)

HOME_ID = "0190f0a0-0000-7000-8000-00000000a001"
HOME: dict[str, object] = {
    "id": HOME_ID,
    "label": "Home",
    "recipient": "Ada Lovelace",
    "line1": "12 St James's Square",
    "line2": None,
    "city": "London",
    "region": None,
    "postalCode": "SW1Y 4JH",
    "country": "GB",
    "phone": "+442079460000",
    "createdAt": "2026-12-01T10:00:00Z",
    "updatedAt": "2026-12-01T10:00:00Z",
}
COPIED = {k: v for k, v in HOME.items() if k not in ("id", "createdAt", "updatedAt")}


def created_event(order_db, order_id: str) -> dict:
    with order_db.transaction() as connection:
        [payload] = connection.execute(
            sa.select(outbox.c.payload).where(
                outbox.c.order_id == order_id, outbox.c.event_type == "order_created"
            )
        ).scalars()
    return json.loads(payload)


@pytest.fixture
def customer_with_home(users) -> str:
    users.addresses[CUSTOMER.user_id] = {HOME_ID: dict(HOME)}
    return HOME_ID


def test_items_keep_the_names_they_were_ordered_under_after_a_rename(
    orders, catalog, new_product, order_db
):
    lamp = new_product(name="Lamp", price="30.00")
    placed = orders.place_order(order_of((lamp, 1)), CUSTOMER).order
    catalog.products.change_product(lamp, ProductChanges(name="Desk lamp"), None)

    [item] = orders.get_order(placed.id, CUSTOMER).items
    assert (item.name, item.price) == ("Lamp", placed.items[0].price)
    assert catalog.products.get_product(lamp).name == "Desk lamp"
    assert created_event(order_db, placed.id)["items"] == [
        {"productId": lamp, "name": "Lamp", "quantity": 1, "price": "30.00"}
    ]


def test_an_order_keeps_a_copy_of_its_address_that_later_edits_do_not_change(
    orders, users, new_product, customer_with_home, order_db
):
    placed = orders.place_order(
        order_of((new_product(), 1), shipping_address_id=customer_with_home), CUSTOMER
    ).order
    users.addresses[CUSTOMER.user_id][customer_with_home].update(line1="1 New Street")
    del users.addresses[CUSTOMER.user_id][customer_with_home]

    stored = orders.get_order(placed.id, CUSTOMER).shipping_address
    assert stored is not None and stored.as_json() == COPIED
    assert created_event(order_db, placed.id)["shippingAddress"] == COPIED
    # The address call replaced the user check: one call to the user service, not two.
    assert users.calls == {"address_of": 1}


def test_an_order_without_an_address_has_none_and_checks_the_user_as_before(
    orders, users, new_product
):
    placed = orders.place_order(order_of((new_product(), 1)), CUSTOMER).order
    assert placed.shipping_address is None
    assert users.calls == {"require_user": 1}


@pytest.mark.parametrize("whose", ["another user's", "unknown"])
def test_an_address_that_is_not_the_users_is_422_with_nothing_held(
    orders, users, catalog, new_product, product_db, customer_with_home, whose
):
    product = new_product(stock=3)
    address = customer_with_home if whose == "another user's" else new_id()
    with pytest.raises(Unprocessable) as refused:
        orders.place_order(order_of((product, 1), shipping_address_id=address), OTHER_CUSTOMER)
    assert refused.value.errors == [
        {"field": "shippingAddressId", "message": "no such address of this user"}
    ]
    assert (stock_of(catalog, product), held(product_db, product)) == (3, 0)


def test_the_user_service_down_is_503_with_nothing_reserved(
    orders, users, catalog, new_product, product_db, customer_with_home
):
    product = new_product(stock=3)
    users.down = True
    with pytest.raises(ServiceUnavailable):
        orders.place_order(order_of((product, 1), shipping_address_id=customer_with_home), CUSTOMER)
    assert (stock_of(catalog, product), held(product_db, product)) == (3, 0)


def test_the_same_key_with_another_address_is_another_body(
    orders, users, new_product, customer_with_home
):
    work_id = new_id()
    users.addresses[CUSTOMER.user_id][work_id] = {**HOME, "id": work_id, "label": "Work"}
    product = new_product()
    key = f"k-address-{new_id()}"
    first = orders.place_order(
        order_of((product, 1), key=key, shipping_address_id=customer_with_home), CUSTOMER
    )
    again = orders.place_order(
        order_of((product, 1), key=key, shipping_address_id=customer_with_home), CUSTOMER
    )
    assert again.replayed and again.order.id == first.order.id
    for changed in (work_id, None):
        with pytest.raises(Unprocessable):
            orders.place_order(
                order_of((product, 1), key=key, shipping_address_id=changed), CUSTOMER
            )


def test_a_pending_order_expires_after_the_payment_timeout_and_settling_clears_it(
    order_db, catalog, users, new_product
):
    orders = OrderService(order_db, catalog, users, payment_timeout_s=90)
    paid = orders.place_order(order_of((new_product(), 1)), CUSTOMER).order
    cancelled = orders.place_order(order_of((new_product(), 1)), CUSTOMER).order
    assert paid.expires_at == paid.created_at + timedelta(seconds=90)
    assert orders.get_order(paid.id, CUSTOMER).expires_at == paid.expires_at
    assert created_event(order_db, paid.id)["expiresAt"] is not None

    assert orders.pay_order(paid.id, CUSTOMER).expires_at is None
    assert orders.cancel_order(cancelled.id, CUSTOMER).expires_at is None
    for order_id in (paid.id, cancelled.id):
        assert orders.get_order(order_id, ADMIN).expires_at is None


def test_details_show_the_user_as_the_user_service_has_them_now(orders, users, new_product):
    order = orders.place_order(order_of((new_product(), 1)), CUSTOMER).order
    shown = order_details_representation(orders.order_details(order.id, CUSTOMER))
    assert shown["id"] == order.id and shown["status"] == "PENDING"
    suffix = CUSTOMER.user_id[-6:]
    assert shown["user"] == {
        "id": CUSTOMER.user_id,
        "username": f"user-{suffix}",
        "email": f"{suffix}@example.com",
    }

    users.user_ids.discard(CUSTOMER.user_id)  # the account is closed
    try:
        closed = order_details_representation(orders.order_details(order.id, ADMIN))
        assert closed["user"] == {"id": CUSTOMER.user_id, "closed": True}
    finally:
        users.user_ids.add(CUSTOMER.user_id)


def test_details_are_503_while_the_user_service_is_down_and_the_order_stays_readable(
    orders, users, new_product
):
    order = orders.place_order(order_of((new_product(), 1)), CUSTOMER).order
    users.down = True
    with pytest.raises(ServiceUnavailable) as unavailable:
        orders.order_details(order.id, CUSTOMER)
    assert "Retry-After" in unavailable.value.headers
    assert orders.get_order(order.id, CUSTOMER).id == order.id


def test_details_of_another_customers_order_do_not_exist_for_them(orders, users, new_product):
    order = orders.place_order(order_of((new_product(), 1)), CUSTOMER).order
    with pytest.raises(NotFound):
        orders.order_details(order.id, OTHER_CUSTOMER)
    with pytest.raises(NotFound):
        orders.order_details(new_id(), ADMIN)
    assert users.calls.get("profile_of") is None
