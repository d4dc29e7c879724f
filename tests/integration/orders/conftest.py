"""The order service's use cases on real databases: the order DB, and the product service's
own use cases standing in for its HTTP API (the same SQL, minus the wire)."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from decimal import Decimal

import pytest
import sqlalchemy as sa

from common.auth import Principal
from common.db import Database
from common.errors import Problem, ServiceUnavailable, Unprocessable, field_error
from common.ids import new_id
from common.migrations import upgrade_to_head
from order_service.app import MIGRATIONS_DIR as ORDER_MIGRATIONS
from order_service.clients import HeldItem, ReservationLine, UserProfile, _short_items_refusal
from order_service.orders_repository import ShippingAddress
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

    def reserve(self, reservation_id: str, lines: Sequence[ReservationLine]) -> dict[str, HeldItem]:
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
        return {
            line.product_id: HeldItem(line.price, line.name)
            for line in reservation.items
            if line.price is not None and line.name is not None
        }

    def release(self, reservation_id: str) -> None:
        self._call("release")
        self.products.release_reservation(reservation_id)

    def release_each(self, reservation_ids: Sequence[str]) -> None:
        self._call("release")
        self.products.release_reservations(reservation_ids)


class KnownUsers:
    """The user directory port, answered from memory as the user service would: each user's
    address book (`addresses[user_id][address_id]`, the user service's JSON), accounts that
    are closed, and `down` for a user service that cannot be reached. `calls` counts the
    calls made to it, by name."""

    def __init__(self, *user_ids: str) -> None:
        self.user_ids = set(user_ids)
        self.addresses: dict[str, dict[str, dict[str, object]]] = {}
        self.down = False
        self.calls: dict[str, int] = {}

    def _call(self, name: str) -> None:
        self.calls[name] = self.calls.get(name, 0) + 1
        if self.down:
            raise ServiceUnavailable("The user service is unavailable.")

    def require_user(self, user_id: str) -> None:
        self._call("require_user")
        if user_id not in self.user_ids:
            raise Unprocessable("No such user.", errors=[field_error("userId", "no such user")])

    def address_of(self, user_id: str, address_id: str) -> ShippingAddress:
        self._call("address_of")
        address = self.addresses.get(user_id, {}).get(address_id)
        if user_id not in self.user_ids or address is None:
            raise Unprocessable(
                "No such address.",
                errors=[field_error("shippingAddressId", "no such address of this user")],
            )
        return ShippingAddress.from_json(address)

    def profile_of(self, user_id: str) -> UserProfile | None:
        self._call("profile_of")
        if user_id not in self.user_ids:
            return None
        return UserProfile(user_id, f"user-{user_id[-6:]}", f"{user_id[-6:]}@example.com")


CUSTOMER = Principal(new_id(), "customer")
OTHER_CUSTOMER = Principal(new_id(), "customer")
ADMIN = Principal(new_id(), "admin")


@pytest.fixture
def mysql_only(database_backend) -> None:
    """Row locks, SKIP LOCKED and killing a connection from another one need MySQL."""
    if database_backend != "mysql":
        pytest.skip("needs MySQL")


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
def users() -> KnownUsers:
    return KnownUsers(CUSTOMER.user_id, OTHER_CUSTOMER.user_id, ADMIN.user_id)


@pytest.fixture
def orders(order_db, catalog, users) -> OrderService:
    return OrderService(order_db, catalog, users)


@pytest.fixture
def new_product(catalog):
    def create(stock: int = 10, price: str = "9.99", name: str = "Order test item") -> str:
        fields = ProductFields(name, "", Decimal(price), stock)
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


def order_of(
    *lines: tuple[str, int],
    key: str | None = None,
    user_id: str | None = None,
    shipping_address_id: str | None = None,
):
    return PlaceOrder(
        user_id, tuple(ReservationLine(p, q) for p, q in lines), key, shipping_address_id
    )


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


@contextmanager
def statements_run(order_db: Database) -> Iterator[list[tuple[str, object]]]:
    """Each SQL statement (with its parameters) the order database runs inside the block."""
    seen: list[tuple[str, object]] = []

    def note(_conn, _cursor, statement, parameters, _context, _executemany):
        seen.append((statement, parameters))

    sa.event.listen(order_db.engine, "before_cursor_execute", note)
    try:
        yield seen
    finally:
        sa.event.remove(order_db.engine, "before_cursor_execute", note)
