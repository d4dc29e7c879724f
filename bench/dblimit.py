"""The database's own limit for the work of one order: the same use cases, with no HTTP.

Each order runs the order service's `place_order` in-process, with the product service's
`reserve_items` use case standing where the HTTP call to it stands, so the SQL is exactly the
SQL of an order placed over HTTP (journal the attempt; reservation rows and conditional stock
updates; order, items and outbox row) but without web servers, JSON or tokens. Prices come from
memory, as the issue defines the limit by the writes. Two processes (one per core) share the
threads, so the GIL of one interpreter is not what is measured.
"""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from decimal import Decimal

from bench.setup import INITIAL_STOCK
from bench.system import fresh_databases
from common.auth import Principal
from common.db import Database
from common.migrations import upgrade_to_head
from order_service.app import MIGRATIONS_DIR as ORDER_MIGRATIONS
from order_service.clients import ProductPrice, ReservationLine
from order_service.service import OrderService, PlaceOrder
from product_service.app import MIGRATIONS_DIR as PRODUCT_MIGRATIONS
from product_service.service import ProductFields, ProductService

PROCESSES = 2


class InProcessCatalog:
    """The product service's use cases called directly instead of over HTTP."""

    def __init__(self, products: ProductService, product_ids: Sequence[str]) -> None:
        self._products = products
        self._prices = {pid: ProductPrice(pid, Decimal("9.99")) for pid in product_ids}

    def prices(self, product_ids: Sequence[str]) -> dict[str, ProductPrice]:
        return {pid: self._prices[pid] for pid in product_ids if pid in self._prices}

    def reserve(self, reservation_id: str, lines: Sequence[ReservationLine]) -> None:
        self._products.reserve_items(
            reservation_id, [(line.product_id, line.quantity) for line in lines]
        )

    def release(self, reservation_id: str) -> None:
        self._products.release_reservation(reservation_id)


class EveryUserExists:
    """The user check is an HTTP call in the service that writes nothing: no cost here."""

    def require_user(self, user_id: str) -> None:
        return None


def prepare(server_url: str, products: int) -> tuple[dict[str, str], list[str]]:
    """Databases of their own, so the limit's orders never reach the system's relay or figures."""
    urls = fresh_databases(server_url, prefix="shop_bench_limit")
    upgrade_to_head(urls["PRODUCT_DATABASE_URL"], PRODUCT_MIGRATIONS)
    upgrade_to_head(urls["ORDER_DATABASE_URL"], ORDER_MIGRATIONS)
    catalog = ProductService(Database.from_url(urls["PRODUCT_DATABASE_URL"]))
    fields = ProductFields("Limit item", "", Decimal("9.99"), INITIAL_STOCK)
    return urls, [catalog.create_product(fields).id for _ in range(products)]


def measure(
    database_urls: dict[str, str],
    product_ids: list[str],
    *,
    concurrency: int,
    duration_s: float,
) -> float:
    """Orders per second that the databases complete at this concurrency."""
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
        return sum(counts) / duration_s


def _place_orders(
    database_urls: dict[str, str],
    product_ids: list[str],
    threads: int,
    duration_s: float,
    seed: int,
) -> int:
    products = ProductService(Database.from_url(database_urls["PRODUCT_DATABASE_URL"]))
    orders = OrderService(
        Database.from_url(database_urls["ORDER_DATABASE_URL"]),
        InProcessCatalog(products, product_ids),
        EveryUserExists(),
    )
    customer = Principal(user_id="00000000-0000-7000-8000-00000000bec4", role="customer")
    placed = [0] * threads
    deadline = time.monotonic() + duration_s

    def shopper(index: int) -> None:
        rng = random.Random(seed * 1000 + index)
        while time.monotonic() < deadline:
            lines = tuple(
                ReservationLine(product_id, rng.randint(1, 3))
                for product_id in rng.sample(product_ids, rng.randint(1, 3))
            )
            orders.place_order(PlaceOrder(None, lines, None), customer)
            placed[index] += 1

    workers = [threading.Thread(target=shopper, args=(i,)) for i in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    return sum(placed)
