"""The cap on unpaid orders (MAX_PENDING_ORDERS) and the per-user count it reads, which every
transition that starts or ends an unpaid slot keeps exact in its own transaction."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta

import pytest
import sqlalchemy as sa

from common.auth import Principal
from common.db import utcnow
from common.errors import Conflict, ServiceUnavailable, Unprocessable
from common.ids import new_id
from order_service.pending_orders import PendingOrders, PendingOrdersCapReached
from order_service.service import OrderService
from order_service.tables import pending_orders
from tests.integration.orders.conftest import ADMIN, held, order_of, statements_run, stock_of

CAP = 5
WAIT_S = 20


@pytest.fixture
def buyer(users) -> Principal:
    """A customer of their own, so counts start at zero."""
    principal = Principal(new_id(), "customer")
    users.user_ids.add(principal.user_id)
    return principal


@pytest.fixture
def capped(order_db, catalog, users) -> OrderService:
    return OrderService(order_db, catalog, users, max_pending_orders=CAP)


def unpaid(order_db, user_id: str) -> int | None:
    with order_db.transaction() as connection:
        return PendingOrders(connection).count_of(user_id)


def test_twenty_concurrent_orders_of_one_user_place_exactly_the_cap(
    capped, buyer, catalog, new_product, order_db
):
    product = new_product(stock=100)
    start = threading.Barrier(20)

    def place(n: int) -> str:
        start.wait(WAIT_S)
        try:
            capped.place_order(order_of((product, 1), key=f"cap-{n}"), buyer)
        except PendingOrdersCapReached as refused:
            return f"{refused.status} {refused.detail}"
        return "placed"

    with ThreadPoolExecutor(max_workers=20) as pool:
        outcomes = list(pool.map(place, range(20)))

    refusals = [outcome for outcome in outcomes if outcome != "placed"]
    assert outcomes.count("placed") == CAP
    assert len(refusals) == 20 - CAP
    assert all(r.startswith("409 ") and "MAX_PENDING_ORDERS" in r for r in refusals)
    assert stock_of(catalog, product) == 100 - CAP
    assert unpaid(order_db, buyer.user_id) == CAP


def test_a_repeat_of_an_earlier_request_is_answered_at_the_cap(capped, buyer, new_product):
    product = new_product(stock=20)
    first = capped.place_order(order_of((product, 1), key="first"), buyer)
    for n in range(CAP - 1):
        capped.place_order(order_of((product, 1), key=f"more-{n}"), buyer)
    with pytest.raises(PendingOrdersCapReached):
        capped.place_order(order_of((product, 1), key="one-too-many"), buyer)

    again = capped.place_order(order_of((product, 1), key="first"), buyer)
    assert again.replayed and again.order.id == first.order.id


def test_paying_or_cancelling_frees_a_slot(capped, buyer, new_product, order_db):
    product = new_product(stock=20)
    placed = [capped.place_order(order_of((product, 1)), buyer).order for _ in range(CAP)]
    with pytest.raises(PendingOrdersCapReached):
        capped.place_order(order_of((product, 1)), buyer)

    capped.pay_order(placed[0].id, buyer)
    capped.pay_order(placed[0].id, buyer)  # a repeat frees nothing more
    assert unpaid(order_db, buyer.user_id) == CAP - 1
    capped.cancel_order(placed[1].id, buyer)
    capped.cancel_order(placed[1].id, buyer)
    assert unpaid(order_db, buyer.user_id) == CAP - 2
    capped.place_order(order_of((product, 1)), buyer)
    capped.place_order(order_of((product, 1)), buyer)
    assert unpaid(order_db, buyer.user_id) == CAP


def test_an_expiry_round_frees_each_owner_exactly_their_orders_slots(
    capped, buyer, catalog, users, new_product, order_db
):
    other = Principal(new_id(), "customer")
    users.user_ids.add(other.user_id)
    product = new_product(stock=20)
    for principal, orders in ((buyer, 3), (other, 2)):
        for _ in range(orders):
            capped.place_order(order_of((product, 1)), principal)
    paid = capped.place_order(order_of((product, 1)), other).order
    capped.pay_order(paid.id, other)
    with order_db.transaction() as connection:  # a count that drifted low stays at zero
        connection.execute(
            sa.update(pending_orders)
            .where(pending_orders.c.user_id == other.user_id)
            .values(count=1)
        )
    an_hour_later = OrderService(
        order_db,
        catalog,
        users,
        clock=lambda: utcnow() + timedelta(hours=1),
        max_pending_orders=CAP,
    )

    while an_hour_later.expire_due_orders():
        pass

    assert (unpaid(order_db, buyer.user_id), unpaid(order_db, other.user_id)) == (0, 0)
    assert stock_of(catalog, product) == 19


def test_a_cancel_that_cannot_release_frees_no_slot(capped, buyer, catalog, new_product, order_db):
    order = capped.place_order(order_of((new_product(), 1)), buyer).order
    catalog.down.add("release")
    with pytest.raises(ServiceUnavailable):
        capped.cancel_order(order.id, buyer)
    assert unpaid(order_db, buyer.user_id) == 1


def test_the_cap_counts_orders_an_admin_placed_for_the_user(capped, buyer, new_product, order_db):
    product = new_product(stock=20)
    for _ in range(CAP):
        capped.place_order(order_of((product, 1), user_id=buyer.user_id), ADMIN)
    with pytest.raises(PendingOrdersCapReached):
        capped.place_order(order_of((product, 1)), buyer)
    assert unpaid(order_db, buyer.user_id) == CAP


def test_orders_in_flight_count(order_db, catalog, users, buyer, new_product, monkeypatch):
    one_at_a_time = OrderService(order_db, catalog, users, max_pending_orders=1)
    product = new_product(stock=5)
    reserving, go_on = threading.Event(), threading.Event()
    reserve = catalog.reserve

    def slow_reserve(reservation_id, lines):
        reserving.set()
        go_on.wait(WAIT_S)
        return reserve(reservation_id, lines)

    monkeypatch.setattr(catalog, "reserve", slow_reserve)
    with ThreadPoolExecutor(max_workers=1) as pool:
        first = pool.submit(one_at_a_time.place_order, order_of((product, 1)), buyer)
        assert reserving.wait(WAIT_S)
        with pytest.raises(PendingOrdersCapReached):
            one_at_a_time.place_order(order_of((product, 1)), buyer)
        go_on.set()
        assert first.result(WAIT_S).order.status == "PENDING"


def test_failed_attempts_give_their_slot_back(
    capped, buyer, catalog, new_product, order_db, product_db
):
    product = new_product(stock=5)
    unknown = new_id()
    with pytest.raises(Unprocessable):
        capped.place_order(order_of((product, 1), (unknown, 1), key="retried"), buyer)
    with pytest.raises(Conflict):
        capped.place_order(order_of((product, 99)), buyer)
    assert unpaid(order_db, buyer.user_id) == 0

    # The failed key starts over: a slot again.
    capped.place_order(order_of((product, 1), key="retried"), buyer)
    assert unpaid(order_db, buyer.user_id) == 1

    # An answer lost while the product service cannot release: the attempt is abandoned and
    # still holds stock, so it still counts until the worker releases it.
    catalog.lose_answers = True
    catalog.down.add("release")
    with pytest.raises(ServiceUnavailable):
        capped.place_order(order_of((product, 2)), buyer)
    assert (held(product_db, product), unpaid(order_db, buyer.user_id)) == (3, 2)
    catalog.lose_answers = False
    catalog.down.clear()
    capped.repair_attempts(stale_after_s=3600)
    assert (held(product_db, product), unpaid(order_db, buyer.user_id)) == (1, 1)


def test_an_attempt_whose_request_died_counts_until_the_worker_releases_it(
    capped, buyer, catalog, new_product, order_db
):
    product = new_product(stock=5)

    class Crash(BaseException):
        pass

    def crash(*_args, **_kwargs):
        raise Crash

    capped._abandon = crash  # the process dies after reserving: nothing cleans up
    catalog.lose_answers = True
    with pytest.raises(Crash):
        capped.place_order(order_of((product, 2)), buyer)
    assert unpaid(order_db, buyer.user_id) == 1
    capped.repair_attempts(stale_after_s=0)
    assert unpaid(order_db, buyer.user_id) == 0
    assert stock_of(catalog, product) == 5


def test_the_count_is_kept_with_the_cap_off(order_db, catalog, users, buyer, new_product):
    uncapped = OrderService(order_db, catalog, users, max_pending_orders=0)
    product = new_product(stock=20)
    placed = [uncapped.place_order(order_of((product, 1)), buyer).order for _ in range(CAP + 2)]
    uncapped.pay_order(placed[0].id, buyer)
    assert unpaid(order_db, buyer.user_id) == CAP + 1
    capped = OrderService(order_db, catalog, users, max_pending_orders=CAP)
    with pytest.raises(PendingOrdersCapReached):
        capped.place_order(order_of((product, 1)), buyer)


def test_one_user_at_the_cap_fails_alone_in_a_group_commit(capped, buyer, users, order_db):
    from order_service.attempt_journal import IN_FLIGHT, OrderAttempt

    other = Principal(new_id(), "customer")
    capped._start_counting(buyer.user_id)
    capped._start_counting(other.user_id)

    def attempt(user: Principal) -> OrderAttempt:
        return OrderAttempt(new_id(), user.user_id, None, "0" * 64, IN_FLIGHT, None, user.user_id)

    assert capped._journal_each([attempt(buyer) for _ in range(CAP - 1)]) == [None] * (CAP - 1)
    outcomes = capped._journal_each([attempt(other), attempt(buyer), attempt(buyer)])

    assert outcomes[0] is None and outcomes[1] is None
    assert isinstance(outcomes[2], PendingOrdersCapReached)
    assert (unpaid(order_db, buyer.user_id), unpaid(order_db, other.user_id)) == (CAP, 1)


def test_the_count_costs_the_hot_path_one_update(capped, buyer, new_product, order_db):
    """Placing an order for a user already counted: the journal's insert and one conditional
    update in its transaction, then the order's four writes, as before the cap."""
    product = new_product()
    capped.place_order(order_of((product, 1)), buyer)  # the first order starts the count
    with statements_run(order_db) as seen:
        capped.place_order(order_of((product, 1)), buyer)
    assert [" ".join(statement.split()[:3]) for statement, _ in seen] == [
        "INSERT INTO order_attempts",
        "UPDATE pending_orders SET",
        "UPDATE order_attempts SET",
        "INSERT INTO orders",
        "INSERT INTO order_items",
        "INSERT INTO outbox",
    ]
