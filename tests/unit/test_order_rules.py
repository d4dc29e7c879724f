"""The order service's pure rules: who orders for whom, request identity, key outcomes."""

from __future__ import annotations

import hashlib
import json
from decimal import Decimal

import pytest

from common.auth import Principal
from common.errors import Conflict, Forbidden, ServiceUnavailable, Unprocessable
from order_service.attempt_journal import COMPLETED, FAILED, IN_FLIGHT, OrderAttempt
from order_service.clients import HeldItem, ReservationLine, _reservation_outcome
from order_service.service import PlaceOrder, _answer_for_earlier, _orderer, _request_hash
from order_service.worker import _Backoff

ALICE = Principal("01a21113-12af-7a1d-9213-90b0e99e75cc", "customer")
ADMIN = Principal("01a21113-12af-7a1d-9213-90b0e99e75aa", "admin")
BOB_ID = "01a21113-12af-7a1d-9213-90b0e99e75bb"


def place(user_id: str | None = None) -> PlaceOrder:
    return PlaceOrder(user_id, (ReservationLine("p", 1),), None)


def test_customers_order_for_themselves_only():
    assert _orderer(place(), ALICE) == ALICE.user_id
    assert _orderer(place(ALICE.user_id), ALICE) == ALICE.user_id
    with pytest.raises(Forbidden):
        _orderer(place(BOB_ID), ALICE)


def test_admins_order_for_anyone_and_default_to_themselves():
    assert _orderer(place(BOB_ID), ADMIN) == BOB_ID
    assert _orderer(place(), ADMIN) == ADMIN.user_id


def test_the_request_hash_ignores_item_order_but_not_quantities_or_user():
    a, b = ReservationLine("a", 1), ReservationLine("b", 2)
    assert _request_hash("u", [a, b]) == _request_hash("u", [b, a])
    assert _request_hash("u", [a, b]) != _request_hash("u", [a, ReservationLine("b", 3)])
    assert _request_hash("u", [a]) != _request_hash("v", [a])


def test_the_request_hash_counts_the_shipping_address_only_when_given():
    a = ReservationLine("a", 1)
    home, work = "0190f0a0-0000-7000-8000-000000000001", "0190f0a0-0000-7000-8000-000000000002"
    assert _request_hash("u", [a], home) != _request_hash("u", [a], work)
    assert _request_hash("u", [a], home) != _request_hash("u", [a])
    # A body without an address hashes as it did before addresses existed, so a retry across
    # the upgrade is still recognised.
    assert (
        _request_hash("u", [a])
        == hashlib.sha256(json.dumps({"userId": "u", "items": [("a", 1)]}).encode()).hexdigest()
    )


def attempt(state: str, request_hash: str = "h", order_id: str | None = None) -> OrderAttempt:
    return OrderAttempt("id", "u", "key", request_hash, state, order_id, "u")


def test_an_earlier_attempt_decides_the_answer():
    assert _answer_for_earlier(attempt(COMPLETED, order_id="o"), "h") == "o"
    with pytest.raises(Unprocessable):
        _answer_for_earlier(attempt(COMPLETED, order_id="o"), "other")
    with pytest.raises(Conflict) as in_flight:
        _answer_for_earlier(attempt(IN_FLIGHT), "h")
    assert in_flight.value.headers["Retry-After"] == "1"
    with pytest.raises(Unprocessable):
        _answer_for_earlier(attempt(FAILED), "other")


def test_relay_backoff_doubles_up_to_a_ceiling_and_resets():
    backoff = _Backoff(0.1)
    delays = [backoff.next_failure() for _ in range(10)]
    assert delays[:3] == [0.2, 0.4, 0.8]
    assert max(delays) == 5.0
    backoff.reset()
    assert backoff.delay == 0.1


def outcome(status: object, body: object) -> object:
    return _reservation_outcome(
        {"status": status, "body": body}, [ReservationLine("p", 1)], "product service"
    )


def held(items: list[dict[str, object]]) -> dict[str, object]:
    return {"reservationId": "r", "state": "held", "items": items}


def test_a_reservation_answer_gives_each_items_price_and_name():
    answer = held([{"productId": "p", "quantity": 1, "price": "0.00", "name": "Pen"}])
    assert outcome(201, answer) == {"p": HeldItem(Decimal("0.00"), "Pen")}


@pytest.mark.parametrize(
    "items",
    [
        [{"productId": "p", "quantity": 1}],  # a product service older than the order service
        [{"productId": "p", "quantity": 1, "price": None, "name": "Pen"}],
        [{"productId": "p", "quantity": 1, "price": "1.00"}],  # named by no product service yet
        [{"productId": "p", "quantity": 1, "price": "1.00", "name": None}],
        [{"productId": "p", "quantity": 1, "price": "1.00", "name": "x" * 201}],
        [{"productId": "q", "quantity": 1, "price": "1.00", "name": "Pen"}],  # p is missing
    ],
)
def test_a_reservation_answer_without_every_price_and_name_is_the_dependencys_failure(items):
    assert isinstance(outcome(201, held(items)), ServiceUnavailable)


def test_a_refused_reservation_is_our_clients_409_or_422():
    short = outcome(409, {"items": [{"productId": "p", "quantity": 1, "available": 0}]})
    assert isinstance(short, Conflict)
    assert short.extra == {"items": [{"productId": "p", "quantity": 1, "available": 0}]}
    unknown = outcome(422, {"errors": [{"field": "items.0.productId", "message": "gone"}]})
    assert isinstance(unknown, Unprocessable)
    assert unknown.errors == [{"field": "items.0.productId", "message": "gone"}]


@pytest.mark.parametrize(
    ("status", "body"),
    [(409, {"detail": "id used for other items"}), (500, {}), (None, None), ("201", [])],
)
def test_any_other_reservation_answer_is_the_dependencys_failure(status, body):
    assert isinstance(outcome(status, body), ServiceUnavailable)
