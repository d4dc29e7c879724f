"""The order service's use cases on real databases: the order DB, and the product service's
own use cases standing in for its HTTP API (the same SQL, minus the wire)."""

from __future__ import annotations

from collections.abc import Sequence
from decimal import Decimal

import pytest
import sqlalchemy as sa

from common.auth import Principal
from common.db import Database
from common.errors import Problem, ServiceUnavailable, Unprocessable, field_error
from common.ids import new_id
from common.migrations import upgrade_to_head
from order_service.app import MIGRATIONS_DIR as ORDER_MIGRATIONS
from order_service.clients import ReservationLine, _short_items_refusal
from order_service.service import OrderService, PlaceOrder
from product_service.app import MIGRATIONS_DIR as PRODUCT_MIGRATIONS
from product_service.repository import HELD, reservations
from product_service.service import ProductFields, ProductService


class ProductServiceCatalog:
    """The catalog port, answered by the product service's use cases in this process.
    `down` makes a call fail the way an unreachable product service does; `lose_answers`
    makes a reservation happen but its answer never arrive."""

    def __init__(self, products: ProductService) -> None:
        self.products = products
        self.down: set[str] = set()
        self.lose_answers = False

    def _call(self, name: str) -> None:
        if name in self.down:
            raise ServiceUnavailable("The product service is unavailable.")

    def reserve(self, reservation_id: str, lines: Sequence[ReservationLine]) -> dict[str, Decimal]:
        self._call("reserve")
        try:
            reservation = self.products.reserve_items(
                reservation_id, [(line.product_id, line.quantity) for line in lines]
            )
        except Problem as problem:
            if problem.status == 404:
                raise Unprocessable("unknown product") from problem
            if problem.status == 409 and "items" in problem.extra:
                # What the HTTP adapter makes of the same answer.
                raise _short_items_refusal(problem.extra["items"], lines) from problem
            raise
        if self.lose_answers:
            raise ServiceUnavailable("The product service's answer was lost.")
        return {line.product_id: line.price for line in reservation.items if line.price is not None}

    def release(self, reservation_id: str) -> None:
        self._call("release")
        self.products.release_reservation(reservation_id)


class KnownUsers:
    def __init__(self, *user_ids: str) -> None:
        self.user_ids = set(user_ids)

    def require_user(self, user_id: str) -> None:
        if user_id not in self.user_ids:
            raise Unprocessable("No such user.", errors=[field_error("userId", "no such user")])


CUSTOMER = Principal(new_id(), "customer")
OTHER_CUSTOMER = Principal(new_id(), "customer")
ADMIN = Principal(new_id(), "admin")


@pytest.fixture(scope="session")
def product_db(databases) -> Database:
    url = databases.create("order_products")
    upgrade_to_head(url, PRODUCT_MIGRATIONS)
    return Database.from_url(url, pool_size=20)


@pytest.fixture(scope="session")
def order_db(databases) -> Database:
    url = databases.create("orders")
    upgrade_to_head(url, ORDER_MIGRATIONS)
    return Database.from_url(url, pool_size=20)


@pytest.fixture
def catalog(product_db) -> ProductServiceCatalog:
    return ProductServiceCatalog(ProductService(product_db))


@pytest.fixture
def orders(order_db, catalog) -> OrderService:
    return OrderService(
        order_db, catalog, KnownUsers(CUSTOMER.user_id, OTHER_CUSTOMER.user_id, ADMIN.user_id)
    )


@pytest.fixture
def new_product(catalog):
    def create(stock: int = 10, price: str = "9.99") -> str:
        fields = ProductFields("Order test item", "", Decimal(price), stock)
        return catalog.products.create_product(fields).id

    return create


@pytest.fixture
def pending(orders, new_product):
    """Places a PENDING order of one fresh product (stock 5): returns (order, product id)."""

    def place(principal=CUSTOMER, quantity: int = 2, service: OrderService | None = None):
        product = new_product(stock=5)
        placed = (service or orders).place_order(order_of((product, quantity)), principal)
        return placed.order, product

    return place


def order_of(*lines: tuple[str, int], key: str | None = None, user_id: str | None = None):
    return PlaceOrder(user_id, tuple(ReservationLine(p, q) for p, q in lines), key)


def stock_of(catalog: ProductServiceCatalog, product_id: str) -> int:
    return catalog.products.get_product(product_id).stock


def held(product_db: Database, product_id: str) -> int:
    with product_db.transaction() as connection:
        total = connection.execute(
            sa.select(sa.func.coalesce(sa.func.sum(reservations.c.quantity), 0)).where(
                reservations.c.product_id == product_id, reservations.c.state == HELD
            )
        ).scalar_one()
    return int(total)
