"""Group commit on the order database: orders placed at the same time share transactions, and
one that cannot go with the rest fails alone."""

from __future__ import annotations

import json
import threading
from concurrent.futures import ThreadPoolExecutor
from decimal import Decimal

import pytest
import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError

from common.db import utcnow
from common.errors import ServiceUnavailable
from common.ids import new_id
from order_service.attempt_journal import (
    ABANDONED,
    COMPLETED,
    IN_FLIGHT,
    AttemptRepository,
    OrderAttempt,
)
from order_service.orders_repository import PENDING, Order, OrderLine
from order_service.service import _Record
from order_service.tables import order_attempts, order_items, outbox
from order_service.tables import orders as orders_table
from tests.integration.orders.conftest import CUSTOMER, order_of

WAIT_S = 20


@pytest.fixture(autouse=True)
def counted_customer(orders) -> None:
    """The journal's writes below skip place_order, which starts the user's counter."""
    orders._start_counting(CUSTOMER.user_id)


def attempt(key: str | None = None) -> OrderAttempt:
    return OrderAttempt(
        new_id(), CUSTOMER.user_id, key, "0" * 64, IN_FLIGHT, None, CUSTOMER.user_id
    )


def record_for(service, attempt_id: str, product: str):
    now, price = utcnow(), Decimal("1.00")
    line = OrderLine(product, 1, price)
    order = Order(new_id(), CUSTOMER.user_id, PENDING, price, attempt_id, (line,), now, now)
    return _Record(attempt_id, order, service._event(order, "order_created"))


def state_of(order_db, attempt_id: str) -> tuple[str, str | None]:
    with order_db.transaction() as connection:
        row = connection.execute(
            sa.select(order_attempts.c.state, order_attempts.c.order_id).where(
                order_attempts.c.id == attempt_id
            )
        ).one()
    return row.state, row.order_id


def test_orders_placed_at_once_are_each_written_exactly_once(
    orders, catalog, new_product, order_db, monkeypatch
):
    """Every thread's reservation is answered at the same moment, so their final writes
    queue behind one another and go together."""
    product = new_product(stock=100)
    threads = 12
    together = threading.Barrier(threads)
    reserve = catalog.reserve

    def reserve_in_step(reservation_id, lines):
        prices = reserve(reservation_id, lines)
        together.wait(WAIT_S)
        return prices

    monkeypatch.setattr(catalog, "reserve", reserve_in_step)
    with ThreadPoolExecutor(max_workers=threads) as pool:
        placed = list(
            pool.map(
                lambda n: orders.place_order(order_of((product, 1), key=f"gc-{n}"), CUSTOMER),
                range(threads),
            )
        )
    order_ids = {p.order.id for p in placed}
    assert len(order_ids) == threads
    with order_db.transaction() as connection:
        attempts = connection.execute(
            sa.select(order_attempts.c.state, order_attempts.c.order_id).where(
                order_attempts.c.order_id.in_(order_ids)
            )
        ).all()
        items = connection.execute(
            sa.select(order_items.c.order_id).where(order_items.c.order_id.in_(order_ids))
        ).all()
        events = connection.execute(
            sa.select(outbox.c.order_id, outbox.c.payload).where(outbox.c.order_id.in_(order_ids))
        ).all()
    assert sorted(a.order_id for a in attempts) == sorted(order_ids)
    assert {a.state for a in attempts} == {COMPLETED}
    assert sorted(i.order_id for i in items) == sorted(order_ids)
    assert sorted(e.order_id for e in events) == sorted(order_ids)
    assert all(json.loads(e.payload)["eventType"] == "order_created" for e in events)


def test_an_attempt_the_worker_claimed_fails_alone_and_the_rest_are_recorded(
    orders, new_product, order_db
):
    product = new_product()
    first, claimed, last = attempt(), attempt(), attempt()
    assert orders._journal_each([first, claimed, last]) == [None, None, None]
    with order_db.transaction() as connection:
        AttemptRepository(connection).move(claimed.id, IN_FLIGHT, ABANDONED, utcnow())
    records = [record_for(orders, a.id, product) for a in (first, claimed, last)]

    outcomes = orders._record_each(records)

    assert outcomes[0] is None and outcomes[2] is None
    assert isinstance(outcomes[1], ServiceUnavailable)
    assert state_of(order_db, first.id) == (COMPLETED, records[0].order.id)
    assert state_of(order_db, claimed.id) == (ABANDONED, None)
    assert state_of(order_db, last.id) == (COMPLETED, records[2].order.id)
    with order_db.transaction() as connection:
        written = connection.execute(
            sa.select(orders_table.c.id).where(orders_table.c.id.in_([r.order.id for r in records]))
        ).scalars()
        assert sorted(written) == sorted([records[0].order.id, records[2].order.id])


def test_a_key_used_before_refuses_only_its_own_attempt(orders, order_db):
    key = f"used-{new_id()}"
    assert orders._journal_each([attempt(key)]) == [None]
    fresh, reused, other = attempt(), attempt(key), attempt(f"other-{new_id()}")

    outcomes = orders._journal_each([fresh, reused, other])

    assert outcomes[0] is None and outcomes[2] is None
    assert isinstance(outcomes[1], IntegrityError)
    assert state_of(order_db, fresh.id) == (IN_FLIGHT, None)
    assert state_of(order_db, other.id) == (IN_FLIGHT, None)


def test_a_database_failure_fails_the_whole_batch(orders, order_db, monkeypatch):
    def lost_connection(self, attempts, now):
        raise sa.exc.OperationalError("INSERT", {}, Exception(2013, "Lost connection"))

    monkeypatch.setattr(AttemptRepository, "add_each", lost_connection)
    with pytest.raises(sa.exc.OperationalError):
        orders._journal_each([attempt(), attempt()])
