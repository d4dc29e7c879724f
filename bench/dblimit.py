"""The database's own limit for the work of one order: its SQL, straight from Python.

Each order runs the statements its whole life over HTTP makes the databases run, in the same
transactions and the same lock order, through the bare driver (PyMySQL): no web servers, no
JSON, no tokens, no ORM. Placing it: product DB: lock the rows in id order (reading their
prices), write the reservation lines with those prices and names, take the stock with one
conditional update; order DB: journal the attempt and count it among its user's unpaid orders
(the cap's conditional update); then complete it and write the order, its items and its outbox
row. Then the load's mix: every 10th order is cancelled (the journalled cancel's three
transactions), every other 5th paid (one), and the rest expire, as the worker's rounds expire
them (claim up to 200 due orders, release their reservations together, finish them together),
run by one thread beside the shoppers. Two processes (one per core) share the threads, so one
interpreter's GIL is not what is measured.
"""

from __future__ import annotations

import json
import random
import threading
import time
import uuid
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import psutil
import sqlalchemy as sa

from bench import cpu
from bench.bulk import open_connection
from bench.setup import INITIAL_STOCK
from bench.system import fresh_databases
from common.ids import new_id
from common.migrations import upgrade_to_head
from order_service.app import MIGRATIONS_DIR as ORDER_MIGRATIONS
from product_service.app import MIGRATIONS_DIR as PRODUCT_MIGRATIONS

PROCESSES = 2
Connection = Any  # a PyMySQL connection (the driver ships no type hints)
BATCH_MARKER = "00000000-0000-0000-0000-000000000000"
# As the bench's order service runs: its unpaid-order cap checked but never reached.
_NO_CAP_REACHED = 1_000_000
# Orders left unpaid fall due this soon: after a pay or cancel placed right after them, which
# therefore win as they do in the system, and before the slice ends.
_PAYMENT_TIMEOUT = timedelta(seconds=1)
# As the order service's worker: a round every half second, up to 200 orders each.
_EXPIRY_INTERVAL_S = 0.5
_EXPIRY_BATCH = 200
# A reservation's item limit: the most products one stock statement names.
_MAX_PRODUCTS_PER_STATEMENT = 100


@dataclass(frozen=True)
class DatabaseLimit:
    """The limit's own databases and products, ready to take orders."""

    urls: dict[str, str]
    product_ids: list[str]

    def run(self, concurrency: int, duration_s: float) -> tuple[int, float]:
        """Places orders for `duration_s`; returns how many, and the CPU seconds they cost the
        driver and the server together."""
        # This process reaps the limit's worker processes, so its children's CPU counts theirs.
        measured = [psutil.Process(), *cpu.database_processes()]
        cpu_before = cpu.cpu_seconds(measured)
        placed = _orders_placed(self.urls, self.product_ids, concurrency, duration_s)
        return placed, cpu.cpu_seconds(measured) - cpu_before


def prepare(server_url: str, products: int) -> DatabaseLimit:
    """Databases of their own, so the limit's orders never reach the system's relay or figures."""
    urls = fresh_databases(server_url, prefix="shop_bench_limit")
    upgrade_to_head(urls["PRODUCT_DATABASE_URL"], PRODUCT_MIGRATIONS)
    upgrade_to_head(urls["ORDER_DATABASE_URL"], ORDER_MIGRATIONS)
    now = datetime.now(UTC).replace(tzinfo=None)
    product_ids = [new_id() for _ in range(products)]
    engine = sa.create_engine(urls["PRODUCT_DATABASE_URL"], poolclass=sa.pool.NullPool)
    with engine.begin() as connection:
        connection.execute(
            sa.text(
                "INSERT INTO products (id, name, description, price, stock, created_at, "
                "updated_at) VALUES (:id, 'Limit item', '', 9.99, :stock, :now, :now)"
            ),
            [{"id": pid, "stock": INITIAL_STOCK, "now": now} for pid in product_ids],
        )
    return DatabaseLimit(urls, product_ids)


def _orders_placed(
    database_urls: dict[str, str], product_ids: list[str], concurrency: int, duration_s: float
) -> int:
    """How many orders the databases complete in `duration_s` at this concurrency."""
    processes = min(PROCESSES, concurrency)
    shares = [concurrency // processes + (i < concurrency % processes) for i in range(processes)]
    with ProcessPoolExecutor(max_workers=processes) as pool:
        counts = pool.map(
            _place_orders,
            [database_urls] * processes,
            [product_ids] * processes,
            shares,
            [duration_s] * processes,
            range(processes),
        )
        return sum(counts)


def _connect(url: str) -> Connection:
    connection = open_connection(url)
    with connection.cursor() as cursor:
        # The services' isolation level (common/db.py).
        cursor.execute("SET SESSION TRANSACTION ISOLATION LEVEL READ COMMITTED")
    return connection


def _place_orders(
    database_urls: dict[str, str],
    product_ids: list[str],
    threads: int,
    duration_s: float,
    seed: int,
) -> int:
    placed = [0] * threads
    # The first process's expiry thread stands in for the order service's one worker.
    expirer = seed == 0
    # The clock starts once every thread holds its connections: at 32 clients connecting takes
    # over a second here, which would otherwise count as time the databases did no orders.
    connected = threading.Barrier(threads + expirer)

    def shopper(index: int) -> None:
        rng = random.Random(seed * 1000 + index)
        products = _connect(database_urls["PRODUCT_DATABASE_URL"])
        orders = _connect(database_urls["ORDER_DATABASE_URL"])
        # One customer per thread, as the load has one per client, each counted from the start.
        user_id = new_id()
        with orders.cursor() as cursor:
            cursor.execute("INSERT INTO pending_orders (user_id, count) VALUES (%s, 0)", (user_id,))
        orders.commit()
        connected.wait()
        deadline = time.monotonic() + duration_s
        while time.monotonic() < deadline:
            wanted = {pid: rng.randint(1, 3) for pid in rng.sample(product_ids, rng.randint(1, 3))}
            order_id, reservation_id = _one_order(products, orders, wanted, user_id)
            placed[index] += 1
            # The load's mix (bench/load.py): every 10th cancelled, every other 5th paid.
            if placed[index] % 10 == 0:
                _cancel(products, orders, order_id, reservation_id)
            elif placed[index] % 5 == 0:
                _pay(orders, order_id)
        products.close()
        orders.close()

    def expiry_worker() -> None:
        products = _connect(database_urls["PRODUCT_DATABASE_URL"])
        orders = _connect(database_urls["ORDER_DATABASE_URL"])
        connected.wait()
        deadline = time.monotonic() + duration_s
        while time.monotonic() < deadline:
            round_started = time.monotonic()
            while _expire_round(products, orders) == _EXPIRY_BATCH:
                pass
            time.sleep(max(0.0, round_started + _EXPIRY_INTERVAL_S - time.monotonic()))
        products.close()
        orders.close()

    workers = [threading.Thread(target=shopper, args=(i,)) for i in range(threads)]
    if expirer:
        workers.append(threading.Thread(target=expiry_worker))
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    return sum(placed)


def _one_order(
    products: Connection, orders: Connection, wanted: dict[str, int], user_id: str
) -> tuple[str, str]:
    """Places one order; returns its id and its reservation's."""
    now = _now()
    attempt_id, order_id = new_id(), new_id()
    ids = sorted(wanted)
    with orders.cursor() as cursor:
        cursor.execute(
            "INSERT INTO order_attempts (id, user_id, orderer_id, idempotency_key, request_hash, "
            "state, order_id, created_at, updated_at) "
            "VALUES (%s, %s, %s, %s, %s, 'in_flight', NULL, %s, %s)",
            (attempt_id, user_id, user_id, str(uuid.uuid4()), "0" * 64, now, now),
        )
        cursor.execute(
            "UPDATE pending_orders SET count = count + 1 WHERE user_id = %s AND count + 1 <= %s",
            (user_id, _NO_CAP_REACHED),
        )
    orders.commit()
    held = _reserve(products, attempt_id, wanted, now)
    prices = {pid: price for pid, (price, _) in held.items()}
    total = sum((prices[pid] * quantity for pid, quantity in wanted.items()), Decimal("0.00"))
    with orders.cursor() as cursor:
        cursor.execute(
            "UPDATE order_attempts SET state = 'completed', order_id = %s, updated_at = %s "
            "WHERE id = %s AND state = 'in_flight'",
            (order_id, now, attempt_id),
        )
        cursor.execute(
            "INSERT INTO orders (id, user_id, status, total_amount, reservation_id, "
            "shipping_address, expires_at, created_at, updated_at) "
            "VALUES (%s, %s, 'PENDING', %s, %s, NULL, %s, %s, %s)",
            (order_id, user_id, total, attempt_id, now + _PAYMENT_TIMEOUT, now, now),
        )
        cursor.executemany(
            "INSERT INTO order_items (order_id, product_id, quantity, price, name) "
            "VALUES (%s, %s, %s, %s, %s)",
            [(order_id, pid, quantity, *held[pid]) for pid, quantity in wanted.items()],
        )
        payload = json.dumps({"orderId": order_id, "totalAmount": str(total), "items": ids})
        cursor.execute(
            "INSERT INTO outbox (id, event_type, order_id, payload, request_id, created_at, "
            "sent_at) VALUES (%s, 'order_created', %s, %s, NULL, %s, NULL)",
            (new_id(), order_id, payload, now),
        )
    orders.commit()
    return order_id, attempt_id


def _reserve(
    products: Connection, reservation_id: str, wanted: dict[str, int], now: datetime
) -> dict[str, tuple[Decimal, str]]:
    """Each product's price and name, as held."""
    ids = sorted(wanted)
    case = " ".join("WHEN %s THEN %s" for _ in ids)
    case_args = [value for pid in ids for value in (pid, wanted[pid])]
    with products.cursor() as cursor:
        # Only %s placeholders are ever interpolated into these statements.
        lock_sql = (
            f"SELECT id, name, price, stock, archived_at IS NOT NULL FROM products "  # noqa: S608
            f"WHERE id IN ({_marks(ids)}) ORDER BY id FOR UPDATE"
        )
        cursor.execute(lock_sql, ids)
        held = {pid: (Decimal(price), name) for pid, name, price, _, _ in cursor.fetchall()}
        lines = [
            (BATCH_MARKER, 0, None, None),
            *((pid, q, *held[pid]) for pid, q in wanted.items()),
        ]
        cursor.executemany(
            "INSERT INTO reservations (reservation_id, product_id, quantity, state, price, name, "
            "created_at, updated_at) VALUES (%s, %s, %s, 'held', %s, %s, %s, %s)",
            [(reservation_id, pid, q, price, name, now, now) for pid, q, price, name in lines],
        )
        take_sql = (
            f"UPDATE products SET stock = stock - CASE id {case} END "  # noqa: S608
            f"WHERE id IN ({_marks(ids)}) AND archived_at IS NULL AND stock >= CASE id {case} END"
        )
        cursor.execute(take_sql, [*case_args, *ids, *case_args])
    products.commit()
    return held


def _marks(values: Sequence[object]) -> str:
    return ", ".join(["%s"] * len(values))


_ORDER_COLUMNS = (
    "id, user_id, status, total_amount, reservation_id, cancel_reason, shipping_address, "
    "expires_at, created_at, updated_at"
)
_FREE_SLOT_OF_ORDER = (
    "UPDATE pending_orders SET count = count - 1 WHERE user_id = "
    "(SELECT user_id FROM orders WHERE id = %s) AND count > 0"
)
_OUTBOX_ROW = (
    "INSERT INTO outbox (id, event_type, order_id, payload, request_id, created_at, sent_at) "
    "VALUES (%s, %s, %s, %s, NULL, %s, NULL)"
)


# The order row and its items locked and read in one statement, as OrderRepository.get does.
_ORDER_WITH_ITEMS_FOR_UPDATE = (
    f"SELECT {_ORDER_COLUMNS}, product_id, quantity, price, name FROM orders "  # noqa: S608
    "LEFT OUTER JOIN order_items ON order_id = id WHERE id = %s FOR UPDATE"
)


def _read_for_update(cursor: Any, order_id: str) -> None:
    cursor.execute(_ORDER_WITH_ITEMS_FOR_UPDATE, (order_id,))
    cursor.fetchall()


def _read_items(cursor: Any, order_ids: Sequence[str]) -> None:
    cursor.execute(
        f"SELECT * FROM order_items WHERE order_id IN ({_marks(order_ids)}) "  # noqa: S608
        "ORDER BY order_id, product_id",
        list(order_ids),
    )
    cursor.fetchall()


def _event_row(event_type: str, order_id: str, now: datetime) -> tuple[object, ...]:
    payload = json.dumps({"orderId": order_id, "eventType": event_type})
    return (new_id(), event_type, order_id, payload, now)


def _pay(orders: Connection, order_id: str) -> None:
    """OrderService.pay_order's one transaction."""
    now = _now()
    with orders.cursor() as cursor:
        _read_for_update(cursor, order_id)
        cursor.execute(
            "UPDATE orders SET status = 'PAID', updated_at = %s, expires_at = NULL WHERE id = %s",
            (now, order_id),
        )
        cursor.execute(_FREE_SLOT_OF_ORDER, (order_id,))
        cursor.execute(_OUTBOX_ROW, _event_row("order_paid", order_id, now))
    orders.commit()


def _cancel(products: Connection, orders: Connection, order_id: str, reservation_id: str) -> None:
    """The journalled cancel: begin (the reason committed), release, finish."""
    now = _now()
    with orders.cursor() as cursor:
        _read_for_update(cursor, order_id)
        cursor.execute(
            "UPDATE orders SET cancel_reason = 'customer', updated_at = %s "
            "WHERE id = %s AND status = 'PENDING' AND cancel_reason IS NULL",
            (now, order_id),
        )
    orders.commit()
    _release(products, [reservation_id], now)
    with orders.cursor() as cursor:
        cursor.execute(
            "UPDATE orders SET status = 'CANCELLED', updated_at = %s, expires_at = NULL "
            "WHERE id = %s AND status = 'PENDING' AND cancel_reason IS NOT NULL",
            (now, order_id),
        )
        cursor.execute(_FREE_SLOT_OF_ORDER, (order_id,))
        cursor.execute(_OUTBOX_ROW, _event_row("order_cancelled", order_id, now))
    orders.commit()


def _expire_round(products: Connection, orders: Connection) -> int:
    """One of the worker's rounds (OrderService.expire_due_orders); returns how many."""
    now = _now()
    with orders.cursor() as cursor:
        cursor.execute(
            f"SELECT {_ORDER_COLUMNS} FROM orders WHERE expires_at <= %s "  # noqa: S608
            "AND status = 'PENDING' AND cancel_reason IS NULL ORDER BY expires_at LIMIT %s "
            "FOR UPDATE SKIP LOCKED",
            (now, _EXPIRY_BATCH),
        )
        claimed = cursor.fetchall()
        order_ids = [row[0] for row in claimed]
        if order_ids:
            cursor.execute(
                "UPDATE orders SET cancel_reason = 'payment_timeout', updated_at = %s "  # noqa: S608
                f"WHERE id IN ({_marks(order_ids)})",
                [now, *order_ids],
            )
            _read_items(cursor, order_ids)
    orders.commit()
    if not order_ids:
        return 0
    _release(products, [row[4] for row in claimed], now)
    _finish_cancels(orders, order_ids, now)
    return len(order_ids)


def _finish_cancels(orders: Connection, order_ids: list[str], now: datetime) -> None:
    """OrderRepository.finish_cancels and the events, in one transaction."""
    with orders.cursor() as cursor:
        cursor.execute(
            f"SELECT id, user_id FROM orders WHERE id IN ({_marks(order_ids)}) "  # noqa: S608
            "AND status = 'PENDING' AND cancel_reason IS NOT NULL ORDER BY id FOR UPDATE",
            order_ids,
        )
        begun = cursor.fetchall()
        finished = [order_id for order_id, _ in begun]
        if not finished:  # a customer's cancel finished every one of them first
            orders.commit()
            return
        cursor.execute(
            "UPDATE orders SET status = 'CANCELLED', updated_at = %s, expires_at = NULL "  # noqa: S608
            f"WHERE id IN ({_marks(finished)})",
            [now, *finished],
        )
        freed: dict[str, int] = {}
        for _, user_id in begun:
            freed[user_id] = freed.get(user_id, 0) + 1
        users = sorted(freed)
        case = " ".join("WHEN %s THEN %s" for _ in users)
        case_args = [value for user in users for value in (user, freed[user])]
        cursor.execute(
            f"UPDATE pending_orders SET count = CASE WHEN count >= CASE user_id {case} END "  # noqa: S608
            f"THEN count - CASE user_id {case} END ELSE 0 END WHERE user_id IN ({_marks(users)})",
            [*case_args, *case_args, *users],
        )
        cursor.executemany(
            _OUTBOX_ROW, [_event_row("order_cancelled", order_id, now) for order_id in finished]
        )
    orders.commit()


def _release(products: Connection, reservation_ids: list[str], now: datetime) -> None:
    """ProductService.release_reservations: lock the lines, mark them released, give the
    stock back in id order, at most a reservation's item limit per statement."""
    with products.cursor() as cursor:
        cursor.execute(
            "SELECT reservation_id, product_id, quantity, state, price, name FROM reservations "  # noqa: S608
            f"WHERE reservation_id IN ({_marks(reservation_ids)}) "
            "ORDER BY reservation_id, product_id FOR UPDATE",
            reservation_ids,
        )
        held: dict[str, int] = {}
        for _, product_id, quantity, state, _, _ in cursor.fetchall():
            if state == "held" and product_id != BATCH_MARKER:
                held[product_id] = held.get(product_id, 0) + quantity
        cursor.execute(
            "UPDATE reservations SET state = 'released', updated_at = %s "  # noqa: S608
            f"WHERE reservation_id IN ({_marks(reservation_ids)}) AND state = 'held'",
            [now, *reservation_ids],
        )
        ordered = sorted(held)
        for start in range(0, len(ordered), _MAX_PRODUCTS_PER_STATEMENT):
            chunk = ordered[start : start + _MAX_PRODUCTS_PER_STATEMENT]
            case = " ".join("WHEN %s THEN %s" for _ in chunk)
            cursor.execute(
                f"UPDATE products SET stock = stock + CASE id {case} END "  # noqa: S608
                f"WHERE id IN ({_marks(chunk)})",
                [*(v for pid in chunk for v in (pid, held[pid])), *chunk],
            )
    products.commit()


def _now() -> datetime:
    return datetime.now(UTC).replace(tzinfo=None)
