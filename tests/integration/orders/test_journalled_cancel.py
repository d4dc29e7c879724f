"""The journalled cancel: its reason committed first, the release with nothing held, then
CANCELLED; whatever fails in between, the order is never payable with its stock given back."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator

import pytest
import sqlalchemy as sa

from common.db import Database
from common.errors import Conflict, ServiceUnavailable
from order_service.service import OrderService
from order_service.tables import outbox
from tests.integration.orders.conftest import (
    ADMIN,
    CUSTOMER,
    KnownUsers,
    ProductServiceCatalog,
    held,
    stock_of,
)

WAIT_S = 10


def events_of(order_db: Database, order_id: str) -> list[dict]:
    with order_db.transaction() as connection:
        rows = connection.execute(
            sa.select(outbox.c.payload).where(outbox.c.order_id == order_id).order_by(outbox.c.id)
        )
        return [json.loads(row.payload) for row in rows]


def event_types(order_db: Database, order_id: str) -> list[str]:
    return [event["eventType"] for event in events_of(order_db, order_id)]


def test_a_cancel_names_its_reason_on_the_order_and_in_its_event(orders, pending, order_db):
    by_customer, _ = pending()
    by_admin, _ = pending()

    assert orders.cancel_order(by_customer.id, CUSTOMER).cancel_reason == "customer"
    assert orders.cancel_order(by_admin.id, ADMIN).cancel_reason == "admin"
    # A later cancel by someone else keeps the first reason.
    assert orders.cancel_order(by_customer.id, ADMIN).cancel_reason == "customer"
    assert orders.get_order(by_customer.id, CUSTOMER).cancel_reason == "customer"
    assert events_of(order_db, by_customer.id)[-1]["reason"] == "customer"
    assert events_of(order_db, by_admin.id)[-1]["reason"] == "admin"
    assert "reason" not in events_of(order_db, by_admin.id)[0]


def test_a_cancel_whose_release_fails_has_begun_and_a_repeat_finishes_it(
    orders, pending, catalog, order_db, product_db
):
    order, product = pending()
    catalog.down.add("release")
    with pytest.raises(ServiceUnavailable) as refused:
        orders.cancel_order(order.id, CUSTOMER)
    assert int(refused.value.headers["Retry-After"]) >= 1

    begun = orders.get_order(order.id, CUSTOMER)
    assert (begun.status, begun.cancel_reason) == ("PENDING", "customer")
    with pytest.raises(Conflict):
        orders.pay_order(order.id, CUSTOMER)
    assert stock_of(catalog, product) == 3  # still held: nothing was released
    assert event_types(order_db, order.id) == ["order_created"]

    catalog.down.clear()
    # The repeat (by an admin, here) carries the customer's cancel on, reason and all.
    cancelled = orders.cancel_order(order.id, ADMIN)
    assert (cancelled.status, cancelled.cancel_reason) == ("CANCELLED", "customer")
    assert stock_of(catalog, product) == 5
    assert held(product_db, product) == 0
    assert event_types(order_db, order.id) == ["order_created", "order_cancelled"]


def test_the_worker_finishes_a_cancel_the_product_service_refused(
    orders, pending, catalog, order_db, product_db
):
    order, product = pending()
    catalog.down.add("release")
    with pytest.raises(ServiceUnavailable):
        orders.cancel_order(order.id, CUSTOMER)
    # Still down: the worker's round fails and leaves the cancel begun.
    with pytest.raises(ServiceUnavailable):
        orders.finish_begun_cancels(begun_before_s=0)
    assert orders.get_order(order.id, CUSTOMER).status == "PENDING"

    catalog.down.clear()
    # A cancel begun only now is left alone: its own request may still be finishing it.
    assert order.id not in _begun_ids(orders, begun_before_s=3600)
    assert orders.finish_begun_cancels(begun_before_s=0) >= 1
    assert orders.get_order(order.id, CUSTOMER).status == "CANCELLED"
    assert orders.finish_begun_cancels(begun_before_s=0) == 0
    assert stock_of(catalog, product) == 5
    assert held(product_db, product) == 0
    [_, cancelled] = events_of(order_db, order.id)
    assert (cancelled["eventType"], cancelled["reason"]) == ("order_cancelled", "customer")


def _begun_ids(orders: OrderService, *, begun_before_s: float) -> set[str]:
    from datetime import timedelta

    from order_service.orders_repository import OrderRepository

    cutoff = orders._clock() - timedelta(seconds=begun_before_s)
    with orders._db.transaction() as connection:
        return {o.id for o in OrderRepository(connection).cancels_begun_before(cutoff, 1000)}


class CommitKiller:
    """Arms a kill of the order database connection that commits next: when that COMMIT is
    about to go out, another connection KILLs it on the server, so the commit is lost exactly
    as a crashed database connection loses it (no mock: MySQL ends the connection)."""

    def __init__(self, db: Database) -> None:
        self._db = db
        self._armed = threading.Event()
        self.killed: list[int] = []

    def arm(self) -> None:
        self._armed.set()

    def on_commit(self, connection: sa.Connection) -> None:
        if not self._armed.is_set():
            return
        self._armed.clear()
        thread_id = connection.connection.dbapi_connection.thread_id()  # type: ignore[union-attr]
        with self._db.engine.connect() as other:
            other.exec_driver_sql(f"KILL CONNECTION {int(thread_id)}")
        self.killed.append(thread_id)


@pytest.fixture
def commit_killer(order_db) -> Iterator[CommitKiller]:
    killer = CommitKiller(order_db)
    sa.event.listen(order_db.engine, "commit", killer.on_commit)
    yield killer
    sa.event.remove(order_db.engine, "commit", killer.on_commit)


class KillAfterRelease(ProductServiceCatalog):
    """The first release goes through; then the next order-database commit dies."""

    def __init__(self, inner: ProductServiceCatalog, killer: CommitKiller) -> None:
        super().__init__(inner.products)
        self._killer: CommitKiller | None = killer

    def release(self, reservation_id: str) -> None:
        super().release(reservation_id)
        if self._killer is not None:
            self._killer.arm()
            self._killer = None


def test_a_connection_killed_between_release_and_commit_never_sells_the_stock_twice(
    mysql_only, order_db, catalog, product_db, commit_killer, pending
):
    orders = OrderService(
        order_db, KillAfterRelease(catalog, commit_killer), KnownUsers(CUSTOMER.user_id)
    )
    order, product = pending(service=orders)
    assert stock_of(catalog, product) == 3

    with pytest.raises(sa.exc.OperationalError):
        orders.cancel_order(order.id, CUSTOMER)
    assert len(commit_killer.killed) == 1

    # The release happened and the CANCELLED commit died: the order shows PENDING, but its
    # cancel has begun, so it cannot be paid (before the journal: paid, 10 sold from 5).
    assert stock_of(catalog, product) == 5
    with pytest.raises(Conflict):
        orders.pay_order(order.id, CUSTOMER)
    between = orders.get_order(order.id, CUSTOMER)
    assert (between.status, between.cancel_reason) == ("PENDING", "customer")
    assert event_types(order_db, order.id) == ["order_created"]

    # The worker's round finishes it: the release again is a no-op, the stock back once.
    assert orders.finish_begun_cancels(begun_before_s=0) >= 1
    after = orders.get_order(order.id, CUSTOMER)
    assert (after.status, after.cancel_reason) == ("CANCELLED", "customer")
    assert orders.cancel_order(order.id, CUSTOMER).status == "CANCELLED"
    with pytest.raises(Conflict):
        orders.pay_order(order.id, CUSTOMER)
    assert stock_of(catalog, product) == 5
    assert held(product_db, product) == 0
    assert event_types(order_db, order.id) == ["order_created", "order_cancelled"]


class StalledRelease(ProductServiceCatalog):
    """A product service that takes its time over a release, until the test lets it go."""

    def __init__(self, inner: ProductServiceCatalog) -> None:
        super().__init__(inner.products)
        self.entered = threading.Event()
        self.go_on = threading.Event()

    def release(self, reservation_id: str) -> None:
        self.entered.set()
        assert self.go_on.wait(WAIT_S)
        super().release(reservation_id)


def test_a_slow_release_holds_no_pooled_connection_and_no_row_lock(
    mysql_only, order_db, catalog, pending
):
    url = order_db.engine.url.render_as_string(hide_password=False)
    small = Database.from_url(url, pool_size=1)
    stalled = StalledRelease(catalog)
    orders = OrderService(small, stalled, KnownUsers(CUSTOMER.user_id))
    order, _ = pending(service=orders)
    other, _ = pending(service=orders)
    outcome: dict[str, object] = {}

    def cancel() -> None:
        outcome["cancel"] = orders.cancel_order(order.id, CUSTOMER).status

    canceller = threading.Thread(target=cancel)
    canceller.start()
    try:
        assert stalled.entered.wait(WAIT_S)
        # While the release is out, the cancel holds nothing of the order database ...
        assert small.engine.pool.checkedout() == 0  # type: ignore[attr-defined]
        # ... so others are served, and a pay of the same order is refused at once rather
        # than waiting on its row.
        assert orders.pay_order(other.id, CUSTOMER).status == "PAID"

        def pay() -> None:
            try:
                orders.pay_order(order.id, CUSTOMER)
            except Conflict:
                outcome["pay"] = "refused"

        payer = threading.Thread(target=pay)
        payer.start()
        payer.join(WAIT_S / 2)
        assert outcome.get("pay") == "refused"
    finally:
        stalled.go_on.set()
        canceller.join(WAIT_S)
        small.dispose()
    assert outcome["cancel"] == "CANCELLED"
