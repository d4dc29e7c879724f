"""The payment timeout: the worker cancels PENDING orders past their expiresAt in batches,
through the journalled cancel, with their stock back exactly once and one `order_cancelled`
event each saying `reason: payment_timeout`; a pay at the same moment and the expiry: one wins."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timedelta

import pytest
import sqlalchemy as sa

from common.db import utcnow
from common.errors import Conflict
from order_service.service import OrderService
from order_service.settings import OrderSettings
from order_service.tables import orders as orders_table
from order_service.worker import Worker
from tests.integration.orders.conftest import (
    CUSTOMER,
    ProductServiceCatalog,
    held,
    order_of,
    stock_of,
)
from tests.integration.orders.test_journalled_cancel import events_of

PRODUCTS, STOCK = 10, 100


def later(seconds: float) -> Callable[[], datetime]:
    """A clock `seconds` ahead: every order placed until now is due at it."""
    return lambda: utcnow() + timedelta(seconds=seconds)


@pytest.fixture
def expiring(order_db, catalog, users) -> OrderService:
    """The worker's service, an hour from now (the orders' timeout is the default 30 min)."""
    return OrderService(order_db, catalog, users, clock=later(3600), max_pending_orders=0)


@pytest.fixture
def placing(order_db, catalog, users) -> OrderService:
    return OrderService(order_db, catalog, users, max_pending_orders=0)


def test_a_thousand_expired_orders_are_all_cancelled_once_with_their_stock_back(
    placing, expiring, new_product, catalog, product_db, order_db
):
    products = [new_product(stock=STOCK) for _ in range(PRODUCTS)]

    def place(n: int) -> str:
        return placing.place_order(order_of((products[n % PRODUCTS], 1)), CUSTOMER).order.id

    with ThreadPoolExecutor(max_workers=8) as pool:
        order_ids = list(pool.map(place, range(PRODUCTS * STOCK)))
    assert all(stock_of(catalog, product) == 0 for product in products)

    rounds = 0
    while expiring.expire_due_orders(limit=200):
        rounds += 1
        assert rounds <= 20  # other tests' orders may be due too, but not unboundedly many
    assert expiring.expire_due_orders() == 0

    assert all(stock_of(catalog, product) == STOCK for product in products)
    assert all(held(product_db, product) == 0 for product in products)
    with order_db.transaction() as connection:
        rows = connection.execute(
            sa.select(orders_table).where(orders_table.c.id.in_(order_ids))
        ).all()
    assert {(row.status, row.cancel_reason, row.expires_at) for row in rows} == {
        ("CANCELLED", "payment_timeout", None)
    }
    for order_id in order_ids[:: len(order_ids) // 50]:
        events = events_of(order_db, order_id)
        assert [event["eventType"] for event in events] == ["order_created", "order_cancelled"]
        assert events[1]["reason"] == "payment_timeout"
    with order_db.transaction() as connection:
        cancelled_events = connection.execute(
            sa.text(
                "SELECT COUNT(*) FROM outbox WHERE event_type = 'order_cancelled' "
                "AND order_id IN :ids"
            ).bindparams(sa.bindparam("ids", expanding=True)),
            {"ids": order_ids},
        ).scalar_one()
    assert cancelled_events == len(order_ids)
    # Expired orders free their owner's unpaid slots: the order is CANCELLED to everyone.
    assert placing.get_order(order_ids[0], CUSTOMER).cancel_reason == "payment_timeout"


def test_an_order_not_yet_due_is_left_alone(placing, pending):
    order, _ = pending(service=placing)
    placing.expire_due_orders()
    still = placing.get_order(order.id, CUSTOMER)
    assert (still.status, still.cancel_reason) == ("PENDING", None)


def test_a_failed_release_leaves_the_expiry_begun_and_a_later_round_finishes_it(
    placing, expiring, pending, catalog, product_db, order_db
):
    order, product = pending(service=placing)
    catalog.down.add("release")
    expiring.expire_due_orders()

    begun = placing.get_order(order.id, CUSTOMER)
    assert (begun.status, begun.cancel_reason) == ("PENDING", "payment_timeout")
    assert stock_of(catalog, product) == 3
    with pytest.raises(Conflict):
        placing.pay_order(order.id, CUSTOMER)
    # The next expiry round does not take it again: its cancel has begun.
    expiring.expire_due_orders()
    assert placing.get_order(order.id, CUSTOMER).status == "PENDING"

    catalog.down.clear()
    assert expiring.finish_begun_cancels(begun_before_s=0) >= 1
    after = placing.get_order(order.id, CUSTOMER)
    assert (after.status, after.cancel_reason, after.expires_at) == (
        "CANCELLED",
        "payment_timeout",
        None,
    )
    assert stock_of(catalog, product) == 5
    assert held(product_db, product) == 0
    events = events_of(order_db, order.id)
    assert [event["eventType"] for event in events] == ["order_created", "order_cancelled"]
    assert events[1]["reason"] == "payment_timeout"


RACES = 100


def race_pay_and_expiry(placing: OrderService, expiring: OrderService, order_id: str) -> bool:
    """Pays and expires the order from two threads let go together; true if the pay was
    refused (409)."""
    start = threading.Barrier(2)
    refused: list[Conflict] = []

    def pay() -> None:
        start.wait()
        try:
            placing.pay_order(order_id, CUSTOMER)
        except Conflict as exc:
            refused.append(exc)

    def expire() -> None:
        start.wait()
        expiring.expire_due_orders()

    threads = [threading.Thread(target=pay), threading.Thread(target=expire)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
        assert not thread.is_alive()
    return bool(refused)


def test_pay_and_expiry_at_the_same_moment_exactly_one_wins(
    mysql_only, placing, expiring, pending, catalog, order_db
):
    outcomes = {"paid": 0, "expired": 0}
    for _ in range(RACES):
        order, product = pending(service=placing)
        pay_refused = race_pay_and_expiry(placing, expiring, order.id)
        final = placing.get_order(order.id, CUSTOMER)
        types = [event["eventType"] for event in events_of(order_db, order.id)]
        if final.status == "PAID":
            assert not pay_refused
            assert final.cancel_reason is None
            assert types == ["order_created", "order_paid"]
            assert stock_of(catalog, product) == 3
            outcomes["paid"] += 1
        else:
            assert pay_refused  # the same 409 a pay gets against a cancel that began first
            assert (final.status, final.cancel_reason) == ("CANCELLED", "payment_timeout")
            assert types == ["order_created", "order_cancelled"]
            assert stock_of(catalog, product) == 5
            outcomes["expired"] += 1
    print(f"pay vs expiry over {RACES} races: {outcomes}")
    assert sum(outcomes.values()) == RACES


def test_the_worker_expires_due_orders_as_an_upkeep_step_of_its_own(
    order_db, placing, expiring, pending, catalog, monkeypatch
):
    settings = OrderSettings.model_validate(
        {
            "database_url": order_db.engine.url.render_as_string(hide_password=False),
            "sqs_endpoint_url": "http://127.0.0.1:9",
            "order_expiry_interval_s": 0.5,
        }
    )
    worker = Worker(settings)
    [step] = [step for step in worker.upkeep if step.name == "expire_orders"]
    assert step.every_s == 0.5
    # The worker's own service, with this test's product service and an hour ahead.
    monkeypatch.setattr(worker, "_orders", expiring)
    order, product = pending(service=placing)

    worker.run_upkeep_due(time.monotonic())

    expired = placing.get_order(order.id, CUSTOMER)
    assert (expired.status, expired.cancel_reason) == ("CANCELLED", "payment_timeout")
    assert stock_of(catalog, product) == 5


def test_two_workers_expiring_at_once_cancel_each_order_once(
    mysql_only, placing, order_db, catalog, users, new_product
):
    product = new_product(stock=300)
    order_ids = [placing.place_order(order_of((product, 1)), CUSTOMER).order.id for _ in range(300)]
    replicas = [
        OrderService(order_db, catalog, users, clock=later(3600), max_pending_orders=0)
        for _ in range(2)
    ]
    start = threading.Barrier(2)

    def expire_all(service: OrderService) -> None:
        start.wait()
        while service.expire_due_orders(limit=50):
            pass

    with ThreadPoolExecutor(max_workers=2) as pool:
        list(pool.map(expire_all, replicas))

    assert stock_of(catalog, product) == 300
    for order_id in order_ids:
        events = events_of(order_db, order_id)
        assert [event["eventType"] for event in events] == ["order_created", "order_cancelled"]


class CountedReleases(ProductServiceCatalog):
    """Counts the calls that release stock, one reservation or many."""

    def __init__(self, inner: ProductServiceCatalog) -> None:
        super().__init__(inner.products)
        self.calls = 0

    def release(self, reservation_id: str) -> None:
        self.calls += 1
        super().release(reservation_id)

    def release_each(self, reservation_ids: Sequence[str]) -> None:
        self.calls += 1
        super().release_each(reservation_ids)


def test_a_round_releases_its_orders_in_one_call_and_a_product_service_down_costs_one(
    order_db, placing, catalog, users, new_product
):
    product = new_product(stock=80)
    order_ids = [placing.place_order(order_of((product, 1)), CUSTOMER).order.id for _ in range(80)]
    counted = CountedReleases(catalog)
    counted.down.add("release")
    expiring = OrderService(order_db, counted, users, clock=later(3600), max_pending_orders=0)

    assert expiring.expire_due_orders(limit=40) == 0
    assert counted.calls == 1
    reasons = [placing.get_order(o, CUSTOMER).cancel_reason for o in order_ids]
    assert (reasons.count("payment_timeout"), reasons.count(None)) == (40, 40)

    counted.down.clear()
    assert expiring.expire_due_orders(limit=200) == 40
    assert counted.calls == 2
    while expiring.finish_begun_cancels(begun_before_s=0):
        pass
    assert {placing.get_order(o, CUSTOMER).status for o in order_ids} == {"CANCELLED"}
    assert stock_of(catalog, product) == 80
