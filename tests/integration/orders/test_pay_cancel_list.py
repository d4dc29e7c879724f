"""Pay, cancel and reading orders: transitions under row locks, each with its event."""

from __future__ import annotations

import json
import threading
import uuid
from collections.abc import Callable
from decimal import Decimal

import pytest
import sqlalchemy as sa

from common.db import utcnow
from common.errors import Conflict, Forbidden, NotFound, ServiceUnavailable
from common.ids import new_id
from order_service.api import MAX_ITEMS
from order_service.orders_repository import (
    PENDING,
    Order,
    OrderFilter,
    OrderLine,
    OrderRepository,
)
from order_service.tables import outbox
from tests.integration.orders.conftest import (
    ADMIN,
    CUSTOMER,
    OTHER_CUSTOMER,
    held,
    order_of,
    statements_run,
    stock_of,
)


def event_types(order_db, order_id: str) -> list[str]:
    with order_db.transaction() as connection:
        rows = connection.execute(
            sa.select(outbox.c.event_type, outbox.c.payload).where(outbox.c.order_id == order_id)
        )
        pairs = [(row.event_type, json.loads(row.payload)) for row in rows]
    assert all(payload["eventType"] == kind for kind, payload in pairs)
    return sorted(kind for kind, _ in pairs)


def test_pay_is_repeatable_and_cancel_after_pay_is_refused(orders, pending, order_db, catalog):
    order, product = pending()
    assert orders.pay_order(order.id, CUSTOMER).status == "PAID"
    assert orders.pay_order(order.id, CUSTOMER).status == "PAID"
    with pytest.raises(Conflict):
        orders.cancel_order(order.id, CUSTOMER)
    assert stock_of(catalog, product) == 3
    assert event_types(order_db, order.id) == ["order_created", "order_paid"]


def test_pay_reads_and_locks_the_order_with_its_items_in_one_statement(
    orders, new_product, order_db
):
    first, second = new_product(stock=5), new_product(stock=5)
    placed = orders.place_order(order_of((second, 2), (first, 1)), CUSTOMER).order
    with statements_run(order_db) as seen:
        paid = orders.pay_order(placed.id, CUSTOMER)
    reads = [statement for statement, _ in seen if statement.lstrip().upper().startswith("SELECT")]
    assert len(reads) == 1, reads
    if order_db.dialect != "sqlite":  # SQLite locks the whole database instead
        assert "FOR UPDATE" in reads[0]
        # By the primary keys, with no temporary table or sort for its few rows.
        with order_db.transaction() as connection:
            plan = str(connection.exec_driver_sql(f"EXPLAIN {reads[0]}", seen[0][1]).all())
        assert "filesort" not in plan and "temporary" not in plan, plan
    # Locked, changed, its owner's slot freed, its event: nothing else on the way.
    assert len(seen) == 4, [statement for statement, _ in seen]
    assert paid.items == placed.items
    assert [(line.product_id, line.quantity) for line in paid.items] == sorted(
        [(first, 1), (second, 2)]
    )


def test_orders_are_read_with_their_items_in_one_statement(orders, new_product, order_db):
    """A page, and the expiry's claim, carry each order's items in its own row: the items
    read back are the items placed (prices exact, names as given, ordered by product)."""
    cheap = new_product(price="0.05", name='Zoë\'s crème brûlée, 1 "portion"')
    dear, even = new_product(price="99999.99"), new_product(price="10.00")
    placed = orders.place_order(order_of((dear, 3), (cheap, 1), (even, 2)), OTHER_CUSTOMER).order
    with statements_run(order_db) as seen:
        page = orders.list_orders(OTHER_CUSTOMER, OrderFilter(), None, 1000)
    assert len(seen) == 1, [statement for statement, _ in seen]
    [listed] = [order for order in page if order.id == placed.id]
    assert listed.items == placed.items
    assert [line.product_id for line in listed.items] == sorted([cheap, dear, even])
    assert {line.price for line in listed.items} == {Decimal("0.05"), Decimal("99999.99"), 10}
    with order_db.engine.connect() as connection:
        claimed = OrderRepository(connection).begin_expiries(listed.expires_at, limit=1000)
        connection.rollback()  # only reading what the worker would claim
    [due] = [order for order in claimed if order.id == placed.id]
    assert due.items == placed.items


def test_an_order_of_the_most_items_with_the_longest_names_is_read_whole(
    orders, new_product, order_db
):
    name = "ü" * 198 + '\\"'  # 200 characters, each of them longer once in JSON or UTF-8
    lines = [(new_product(stock=5, name=name), 1) for _ in range(MAX_ITEMS)]
    placed = orders.place_order(order_of(*lines), OTHER_CUSTOMER).order
    page = orders.list_orders(OTHER_CUSTOMER, OrderFilter(), None, 1000)
    [listed] = [order for order in page if order.id == placed.id]
    assert len(listed.items) == MAX_ITEMS
    assert listed.items == placed.items
    assert {line.name for line in listed.items} == {name}


def test_items_read_back_exactly_whatever_their_names_hold(order_db):
    """A line of text per item (see _LINE_AS_TEXT): names with commas, quotes and every
    control character (stored before names refused them), an empty name and none at all read
    back exactly, beside the largest quantity and price the columns hold."""
    names = [
        "," * 200,
        ('"\\,\t\n' + "".join(map(chr, range(32))) + "\x7f\x85 é😀")[:200],
        "",
        None,
    ]
    lines = tuple(
        OrderLine(str(uuid.UUID(int=index + 1)), 2**31 - 1, Decimal("9999999999.99"), name)
        for index, name in enumerate(names)
    )
    now = utcnow()
    order = Order(new_id(), CUSTOMER.user_id, PENDING, Decimal("1.00"), new_id(), lines, now, now)
    with order_db.transaction() as connection:
        OrderRepository(connection).add_each([order])
    with order_db.transaction() as connection:
        read = OrderRepository(connection).get(order.id)
    assert read is not None and read.items == lines


def test_no_read_of_orders_makes_a_work_table_on_disk(orders, pending, order_db):
    """MariaDB puts an aggregate's work table on disk when a value is typed longer than 512
    characters (see _LINE_AS_TEXT): an order by id, a page and the expiry's claim.
    (SQLite has no such tables; there the reads are only checked to find the order.)"""
    order, _ = pending()
    reads: dict[str, Callable[[OrderRepository], object]] = {
        "by id": lambda repository: repository.get(order.id, for_update=True),
        "page": lambda repository: repository.page(OrderFilter(user_id=CUSTOMER.user_id), None, 20),
        "expiry's claim": lambda repository: repository.begin_expiries(order.expires_at, 10),
    }
    for name, read in reads.items():
        with order_db.engine.connect() as connection:
            before = _disk_tables(connection)
            assert read(OrderRepository(connection)), name
            assert _disk_tables(connection) == before, name
            connection.rollback()


def _disk_tables(connection: sa.Connection) -> int:
    if connection.dialect.name == "sqlite":
        return 0
    status = connection.exec_driver_sql("SHOW SESSION STATUS LIKE 'Created_tmp_disk_tables'")
    return int(status.one()[1])


def test_cancel_releases_stock_exactly_once(orders, pending, order_db, catalog, product_db):
    order, product = pending()
    assert orders.cancel_order(order.id, ADMIN).status == "CANCELLED"
    assert orders.cancel_order(order.id, CUSTOMER).status == "CANCELLED"
    with pytest.raises(Conflict):
        orders.pay_order(order.id, CUSTOMER)
    assert stock_of(catalog, product) == 5
    assert held(product_db, product) == 0
    assert event_types(order_db, order.id) == ["order_cancelled", "order_created"]


def test_cancel_while_the_product_service_is_down_moves_no_stock(
    orders, pending, catalog, order_db
):
    order, product = pending()
    catalog.down.add("release")
    with pytest.raises(ServiceUnavailable):
        orders.cancel_order(order.id, CUSTOMER)
    # Begun (see test_journalled_cancel), not done: still PENDING, its stock still held.
    assert orders.get_order(order.id, CUSTOMER).status == "PENDING"
    assert stock_of(catalog, product) == 3
    assert event_types(order_db, order.id) == ["order_created"]


def test_concurrent_pay_and_cancel_one_wins(orders, pending, order_db, catalog):
    for _ in range(5):
        order, product = pending()
        barrier = threading.Barrier(2)
        outcomes: dict[str, str] = {}

        def attempt(name, call, order_id=order.id, barrier=barrier, outcomes=outcomes):
            barrier.wait()
            try:
                outcomes[name] = call(order_id, CUSTOMER).status
            except Conflict:
                outcomes[name] = "refused"

        threads = [
            threading.Thread(target=attempt, args=("pay", orders.pay_order)),
            threading.Thread(target=attempt, args=("cancel", orders.cancel_order)),
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        final = orders.get_order(order.id, ADMIN).status
        assert sorted(outcomes.values()) in (["PAID", "refused"], ["CANCELLED", "refused"])
        assert stock_of(catalog, product) == (5 if final == "CANCELLED" else 3)
        second = "order_paid" if final == "PAID" else "order_cancelled"
        assert event_types(order_db, order.id) == sorted(["order_created", second])


def test_another_customers_order_does_not_exist_for_them(orders, pending):
    order, _ = pending()
    with pytest.raises(NotFound):
        orders.get_order(order.id, OTHER_CUSTOMER)
    with pytest.raises(NotFound):
        orders.pay_order(order.id, OTHER_CUSTOMER)
    with pytest.raises(NotFound):
        orders.cancel_order(order.id, OTHER_CUSTOMER)
    assert orders.get_order(order.id, ADMIN).id == order.id


def test_customers_list_their_own_orders_and_admins_filter(orders, pending):
    mine = {pending(CUSTOMER)[0].id for _ in range(3)}
    theirs = pending(OTHER_CUSTOMER)[0]
    orders.pay_order(theirs.id, OTHER_CUSTOMER)

    listed = orders.list_orders(CUSTOMER, OrderFilter(), None, 100)
    assert mine <= {o.id for o in listed}
    assert all(o.user_id == CUSTOMER.user_id for o in listed)
    with pytest.raises(Forbidden):
        orders.list_orders(CUSTOMER, OrderFilter(user_id=OTHER_CUSTOMER.user_id), None, 10)

    paid = orders.list_orders(
        ADMIN, OrderFilter(user_id=OTHER_CUSTOMER.user_id, status="PAID"), None, 100
    )
    assert theirs.id in {o.id for o in paid}
    assert all(o.status == "PAID" and o.user_id == OTHER_CUSTOMER.user_id for o in paid)


def walk(orders, where: OrderFilter, page_size: int) -> list[str]:
    walked, before = [], None
    while True:
        page = orders.list_orders(ADMIN, where, before, page_size)
        walked += [o.id for o in page]
        if len(page) < page_size:
            return walked
        before = page[-1].id


@pytest.mark.parametrize(
    "where",
    [OrderFilter(user_id=OTHER_CUSTOMER.user_id), OrderFilter(status="PENDING"), OrderFilter()],
    ids=["by user", "by status", "everyone"],
)
def test_pages_go_newest_first_exactly_once_while_orders_are_placed(orders, pending, where):
    """Keyset pages going back in time: orders placed during the walk are newer than its
    cursor, so they never shift a page; every order there before the walk is seen once."""
    for _ in range(6):
        pending(OTHER_CUSTOMER)
    before_walk = [o.id for o in orders.list_orders(ADMIN, where, None, 100_000)]
    assert before_walk == sorted(before_walk, reverse=True)
    stop = threading.Event()

    def keep_placing() -> None:
        while not stop.is_set():
            pending(OTHER_CUSTOMER)

    placers = [threading.Thread(target=keep_placing) for _ in range(2)]
    for placer in placers:
        placer.start()
    try:
        walked = walk(orders, where, page_size=2)
    finally:
        stop.set()
        for placer in placers:
            placer.join()
    newest_at_start = before_walk[0]
    assert len(walked) == len(set(walked))
    assert walked == sorted(walked, reverse=True)
    assert [i for i in walked if i <= newest_at_start] == before_walk
    assert walk(orders, where, page_size=1000)[0] > newest_at_start, "orders were placed meanwhile"


@pytest.mark.parametrize(
    "where",
    [
        OrderFilter(user_id=OTHER_CUSTOMER.user_id),
        OrderFilter(status="PAID"),
        OrderFilter(user_id=OTHER_CUSTOMER.user_id, status="PENDING"),
        OrderFilter(),
    ],
    ids=["by user", "by status", "by user and status", "everyone"],
)
def test_newest_first_pages_read_an_index_backwards_without_sorting(
    orders, pending, order_db, where
):
    for _ in range(3):
        pending(OTHER_CUSTOMER)
    newest = orders.list_orders(ADMIN, OrderFilter(), None, 1)[0].id
    with statements_run(order_db) as seen:
        orders.list_orders(ADMIN, where, newest, 21)
    statement, parameters = seen[0]
    assert statement.lstrip().upper().startswith("SELECT")
    # Through SQLAlchemy, so the read's transaction ends when the connection goes back.
    with order_db.transaction() as connection:
        if order_db.dialect == "sqlite":
            plan = connection.exec_driver_sql(f"EXPLAIN QUERY PLAN {statement}", parameters)
            details = " ".join(str(row[-1]) for row in plan)
            assert "TEMP B-TREE" not in details, details
        else:
            rows = [
                row._asdict()
                for row in connection.exec_driver_sql(f"EXPLAIN {statement}", parameters)
            ]
            page, *items = rows
            assert page["table"] == "orders", rows
            assert "filesort" not in str(page["Extra"]), rows
            assert page["key"] is not None, rows
            # Each order's items: one lookup by the items' primary key (order_id first).
            assert [(i["select_type"], i["type"], i["key"]) for i in items] == [
                ("DEPENDENT SUBQUERY", "ref", "PRIMARY")
            ], rows
