"""Placing orders: the journal, idempotency, and every failure path leaving nothing behind."""

from __future__ import annotations

import json
from decimal import Decimal

import pytest
import sqlalchemy as sa

from common.db import utcnow
from common.errors import Conflict, Forbidden, ServiceUnavailable, Unprocessable
from common.ids import new_id
from order_service.attempt_journal import (
    ABANDONED,
    COMPLETED,
    FAILED,
    IN_FLIGHT,
    AttemptRepository,
    OrderAttempt,
)
from order_service.service import _request_hash
from order_service.tables import order_attempts, outbox
from order_service.tables import orders as orders_table
from tests.integration.orders.conftest import (
    ADMIN,
    CUSTOMER,
    OTHER_CUSTOMER,
    held,
    order_of,
    stock_of,
)


def attempt_states(order_db, user_id: str) -> list[str]:
    with order_db.transaction() as connection:
        rows = connection.execute(
            sa.select(order_attempts.c.state).where(order_attempts.c.user_id == user_id)
        )
        return [row.state for row in rows]


def orders_of(order_db, user_id: str) -> int:
    with order_db.transaction() as connection:
        return int(
            connection.execute(
                sa.select(sa.func.count()).where(orders_table.c.user_id == user_id)
            ).scalar_one()
        )


def events_of(order_db, order_id: str) -> list[dict]:
    with order_db.transaction() as connection:
        rows = connection.execute(sa.select(outbox.c.payload).where(outbox.c.order_id == order_id))
        return [json.loads(row.payload) for row in rows]


def test_an_order_takes_prices_from_the_catalog_and_writes_its_event(
    orders, catalog, new_product, order_db
):
    cheap, dear = new_product(price="1.50", name="Pencil"), new_product(price="20.00", name="Pen")

    placed = orders.place_order(order_of((cheap, 2), (dear, 1)), CUSTOMER)

    order = placed.order
    assert not placed.replayed
    assert order.status == "PENDING"
    assert order.total_amount == Decimal("23.00")
    assert order.user_id == CUSTOMER.user_id
    assert (stock_of(catalog, cheap), stock_of(catalog, dear)) == (8, 9)
    [event] = events_of(order_db, order.id)
    assert event["eventType"] == "order_created"
    assert event["totalAmount"] == "23.00"
    assert event["userId"] == CUSTOMER.user_id
    assert sorted(event["items"], key=lambda i: i["price"]) == [
        {"productId": cheap, "name": "Pencil", "quantity": 2, "price": "1.50"},
        {"productId": dear, "name": "Pen", "quantity": 1, "price": "20.00"},
    ]


def test_the_same_key_and_body_replays_the_order_and_moves_stock_once(orders, catalog, new_product):
    product = new_product(stock=5)
    first = orders.place_order(order_of((product, 2), key="k-replay"), CUSTOMER)
    again = orders.place_order(order_of((product, 2), key="k-replay"), CUSTOMER)

    assert again.replayed
    assert again.order.id == first.order.id
    assert stock_of(catalog, product) == 3


def test_a_key_is_scoped_to_its_user(orders, new_product):
    product = new_product()
    mine = orders.place_order(order_of((product, 1), key="k-shared"), CUSTOMER)
    theirs = orders.place_order(order_of((product, 1), key="k-shared"), OTHER_CUSTOMER)
    assert mine.order.id != theirs.order.id
    assert not theirs.replayed


def test_the_same_key_with_another_body_is_refused(orders, catalog, new_product):
    product = new_product(stock=5)
    orders.place_order(order_of((product, 1), key="k-body"), CUSTOMER)
    with pytest.raises(Unprocessable):
        orders.place_order(order_of((product, 2), key="k-body"), CUSTOMER)
    assert stock_of(catalog, product) == 4


def test_a_key_whose_attempt_is_in_flight_answers_conflict(orders, order_db, new_product):
    product = new_product()
    command = order_of((product, 1), key="k-inflight")
    with order_db.transaction() as connection:
        AttemptRepository(connection).add_each(
            [
                OrderAttempt(
                    new_id(),
                    CUSTOMER.user_id,
                    "k-inflight",
                    _request_hash(CUSTOMER.user_id, command.lines),
                    IN_FLIGHT,
                    None,
                    CUSTOMER.user_id,
                )
            ],
            utcnow(),
        )
    with pytest.raises(Conflict) as refused:
        orders.place_order(command, CUSTOMER)
    assert refused.value.headers["Retry-After"] == "1"


def test_items_in_another_order_are_the_same_body(orders, new_product):
    a, b = new_product(), new_product()
    first = orders.place_order(order_of((a, 1), (b, 2), key="k-reordered"), CUSTOMER)
    again = orders.place_order(order_of((b, 2), (a, 1), key="k-reordered"), CUSTOMER)
    assert again.order.id == first.order.id


def test_unknown_product_leaves_nothing_and_the_key_can_be_retried(
    orders, catalog, new_product, order_db
):
    product = new_product(stock=3)
    missing = "00000000-0000-7000-8000-0000000000aa"
    with pytest.raises(Unprocessable) as refused:
        orders.place_order(order_of((product, 1), (missing, 1), key="k-unknown"), ADMIN)
    assert refused.value.errors == [{"field": "items.1.productId", "message": "no such product"}]
    assert stock_of(catalog, product) == 3
    assert attempt_states(order_db, ADMIN.user_id).count(FAILED) >= 1

    retried = orders.place_order(order_of((product, 1), key="k-unknown"), ADMIN)
    assert retried.order.status == "PENDING"
    assert stock_of(catalog, product) == 2


def test_an_archived_product_is_unknown_even_when_another_item_is_short(
    orders, catalog, new_product, product_db
):
    plenty, gone, scarce = new_product(stock=5), new_product(stock=5), new_product(stock=0)
    catalog.products.archive_product(gone, None)
    with pytest.raises(Unprocessable) as refused:
        orders.place_order(order_of((plenty, 1), (gone, 1), (scarce, 1)), CUSTOMER)
    assert refused.value.errors == [{"field": "items.1.productId", "message": "no such product"}]
    assert [held(product_db, p) for p in (plenty, gone, scarce)] == [0, 0, 0]
    assert stock_of(catalog, plenty) == 5


def test_short_stock_reserves_nothing(orders, catalog, new_product, product_db):
    plenty, scarce = new_product(stock=10), new_product(stock=1)
    with pytest.raises(Conflict) as refused:
        orders.place_order(order_of((plenty, 2), (scarce, 2)), OTHER_CUSTOMER)
    assert refused.value.extra["items"] == [{"productId": scarce, "quantity": 2, "available": 1}]
    assert (stock_of(catalog, plenty), stock_of(catalog, scarce)) == (10, 1)
    assert held(product_db, plenty) == 0


def test_unknown_user_is_unprocessable_and_only_admins_order_for_others(orders, new_product):
    product = new_product()
    with pytest.raises(Unprocessable):
        orders.place_order(
            order_of((product, 1), user_id="00000000-0000-7000-8000-0000000000bb"), ADMIN
        )
    with pytest.raises(Forbidden):
        orders.place_order(order_of((product, 1), user_id=OTHER_CUSTOMER.user_id), CUSTOMER)
    placed = orders.place_order(order_of((product, 1), user_id=OTHER_CUSTOMER.user_id), ADMIN)
    assert placed.order.user_id == OTHER_CUSTOMER.user_id


def test_a_lost_reservation_answer_gives_the_stock_back(orders, catalog, new_product, product_db):
    product = new_product(stock=4)
    catalog.lose_answers = True
    with pytest.raises(ServiceUnavailable):
        orders.place_order(order_of((product, 3)), CUSTOMER)
    assert stock_of(catalog, product) == 4
    assert held(product_db, product) == 0


def test_an_unreleasable_attempt_is_left_to_the_worker(
    orders, catalog, new_product, order_db, product_db
):
    product = new_product(stock=4)
    catalog.lose_answers = True
    catalog.down.add("release")
    with pytest.raises(ServiceUnavailable):
        orders.place_order(order_of((product, 3)), OTHER_CUSTOMER)
    assert held(product_db, product) == 3
    assert ABANDONED in attempt_states(order_db, OTHER_CUSTOMER.user_id)

    catalog.down.clear()
    orders.repair_attempts(stale_after_s=3600)

    assert held(product_db, product) == 0
    assert stock_of(catalog, product) == 4
    assert ABANDONED not in attempt_states(order_db, OTHER_CUSTOMER.user_id)


def test_the_worker_releases_an_attempt_whose_request_died(
    orders, catalog, new_product, order_db, product_db
):
    """A crash between reserving and committing: the attempt stays in flight, stock held."""
    product = new_product(stock=4)
    crashed = order_of((product, 2))

    class Crash(BaseException):
        pass

    def crash_after_reserving(*_args, **_kwargs):
        raise Crash

    orders._abandon = crash_after_reserving  # the process dies: nothing cleans up
    catalog.lose_answers = True
    with pytest.raises(Crash):
        orders.place_order(crashed, ADMIN)
    assert held(product_db, product) == 2

    orders.repair_attempts(stale_after_s=3600)
    assert held(product_db, product) == 2, "a young attempt may still be running"
    orders.repair_attempts(stale_after_s=0)
    assert held(product_db, product) == 0
    assert stock_of(catalog, product) == 4


def test_an_attempt_the_worker_claimed_never_becomes_an_order(
    orders, catalog, new_product, order_db
):
    """The request outlived the repair deadline: its commit must lose to the worker's release."""
    product = new_product(stock=4)
    real_reserve = catalog.reserve

    def reserve_then_stall(reservation_id, lines):
        prices = real_reserve(reservation_id, lines)
        with order_db.transaction() as connection:
            AttemptRepository(connection).move(reservation_id, IN_FLIGHT, ABANDONED, utcnow())
        return prices

    catalog.reserve = reserve_then_stall
    with pytest.raises(ServiceUnavailable):
        orders.place_order(order_of((product, 2)), CUSTOMER)
    orders.repair_attempts(stale_after_s=3600)
    assert stock_of(catalog, product) == 4


def test_a_database_failure_at_the_end_leaves_nothing_held(
    orders, catalog, new_product, product_db, monkeypatch
):
    from order_service import orders_repository

    product = new_product(stock=4)

    def broken_add(self, new_orders):
        raise sa.exc.OperationalError("INSERT", {}, Exception(2013, "Lost connection"))

    monkeypatch.setattr(orders_repository.OrderRepository, "add_each", broken_add)
    with pytest.raises(sa.exc.OperationalError):
        orders.place_order(order_of((product, 1)), CUSTOMER)
    assert held(product_db, product) == 0
    assert stock_of(catalog, product) == 4


def test_completed_attempts_name_their_order(orders, new_product, order_db):
    product = new_product()
    placed = orders.place_order(order_of((product, 1), key="k-complete"), ADMIN)
    with order_db.transaction() as connection:
        attempt = AttemptRepository(connection).by_key(ADMIN.user_id, "k-complete")
    assert attempt is not None
    assert (attempt.state, attempt.order_id) == (COMPLETED, placed.order.id)
