"""Races the issue names, run on real gunicorn workers and MySQL: requests released together."""

from __future__ import annotations

import time
from collections import Counter
from functools import partial

import pytest

from tests.e2e.orders.shop import (
    all_at_once,
    all_orders,
    get_order,
    line,
    place_order,
    placed,
    random_id,
    stock_of,
    transition,
)

pytestmark = pytest.mark.e2e


def test_twenty_concurrent_requests_with_one_key_place_one_order(
    order_service, product_service, new_customer, new_product
):
    buyer = new_customer()
    product = new_product(stock=100)
    key = random_id()

    answers = all_at_once(
        [lambda: place_order(order_service.url, buyer, [line(product, 3)], key=key)] * 20
    )

    statuses = Counter(answer.status_code for answer in answers)
    assert set(statuses) <= {200, 201, 409}, [(a.status_code, a.text) for a in answers]
    assert statuses[201] == 1, statuses
    named = {answer.json()["id"] for answer in answers if answer.status_code in {200, 201}}
    assert len(named) == 1, named
    for answer in answers:
        if answer.status_code == 409:
            assert int(answer.headers["Retry-After"]) >= 1
    (order,) = all_orders(order_service.url, buyer)
    assert order["id"] in named
    assert stock_of(product_service.url, product) == 97
    # Once the first has finished, the key answers with the order, whatever the race said.
    repeat = place_order(order_service.url, buyer, [line(product, 3)], key=key)
    assert (repeat.status_code, repeat.json()["id"]) == (200, order["id"])


def test_one_key_raced_with_two_bodies_places_one_order(
    order_service, product_service, new_customer, new_product
):
    buyer = new_customer()
    product = new_product(stock=100)
    key = random_id()
    bodies = [[line(product, 1)], [line(product, 2)]]

    answers = all_at_once(
        [partial(place_order, order_service.url, buyer, bodies[i % 2], key=key) for i in range(16)]
    )

    statuses = Counter(answer.status_code for answer in answers)
    assert set(statuses) <= {200, 201, 409, 422}, [(a.status_code, a.text) for a in answers]
    assert statuses[201] == 1, statuses
    (winner,) = [a.json() for a in answers if a.status_code == 201]
    quantity = winner["items"][0]["quantity"]
    for index, answer in enumerate(answers):
        same_body = bodies[index % 2][0]["quantity"] == quantity
        if answer.status_code == 200:
            assert same_body and answer.json()["id"] == winner["id"]
        if answer.status_code == 422:
            assert not same_body, answer.text
    assert [o["id"] for o in all_orders(order_service.url, buyer)] == [winner["id"]]
    assert stock_of(product_service.url, product) == 100 - quantity


def test_thirty_concurrent_orders_for_five_in_stock_sell_exactly_five(
    order_service, product_service, admin, new_customer, new_product
):
    product = new_product(stock=5)
    buyers = [new_customer() for _ in range(3)]

    answers = all_at_once(
        [
            partial(place_order, order_service.url, buyers[i % 3], [line(product, 1)])
            for i in range(30)
        ]
    )

    statuses = Counter(answer.status_code for answer in answers)
    assert statuses == {201: 5, 409: 25}, [(a.status_code, a.text[:200]) for a in answers]
    assert stock_of(product_service.url, product) == 0
    created = {a.json()["id"] for a in answers if a.status_code == 201}
    existing = set()
    for buyer in buyers:
        existing |= {o["id"] for o in all_orders(order_service.url, admin, userId=buyer.id)}
    assert existing == created


def test_concurrent_pay_and_cancel_let_exactly_one_win(
    order_service, order_worker, order_events, product_service, customer, new_product
):
    product = new_product(stock=50)
    outcomes = []
    order_ids = []
    for _ in range(6):
        order = placed(order_service.url, customer, [line(product, 2)])
        order_ids.append(order["id"])
        before = stock_of(product_service.url, product)

        paid, cancelled = all_at_once(
            [
                partial(transition, order_service.url, customer, order["id"], "pay"),
                partial(transition, order_service.url, customer, order["id"], "cancel"),
            ]
        )

        codes = (paid.status_code, cancelled.status_code)
        assert codes in {(200, 409), (409, 200)}, (paid.text, cancelled.text)
        final = get_order(order_service.url, customer, order["id"]).json()["status"]
        winner = "PAID" if codes == (200, 409) else "CANCELLED"
        assert final == winner
        outcomes.append(winner)
        expected_stock = before + 2 if winner == "CANCELLED" else before
        assert stock_of(product_service.url, product) == expected_stock
        last = "order_paid" if winner == "PAID" else "order_cancelled"
        order_events.wait_for_types(order["id"], ["order_created", last])
    # A loser's event would trail the winner's by little; give it a moment to show up.
    time.sleep(1.0)
    for order_id, winner in zip(order_ids, outcomes, strict=True):
        last = "order_paid" if winner == "PAID" else "order_cancelled"
        assert order_events.event_types(order_id) == sorted(["order_created", last])
