"""Stock under real concurrency: real threads, a real database, no oversell and no drift."""

from __future__ import annotations

import threading
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from typing import Any

import sqlalchemy as sa
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy.exc import OperationalError

from common.db import Database
from product_service.repository import HELD, ReservationRepository, reservations
from product_service.service import ProductService
from tests.integration.products.conftest import ADMIN, SERVICE


def run_together(count: int, call: Callable[[int], Any]) -> list[Any]:
    """Runs `call(i)` on `count` threads released at the same instant."""
    barrier = threading.Barrier(count)

    def run(index: int) -> Any:
        barrier.wait()
        return call(index)

    with ThreadPoolExecutor(max_workers=count) as pool:
        return list(pool.map(run, range(count)))


def stock_of(app, product_id: str) -> int:
    return app.test_client().get(f"/api/v1/products/{product_id}").get_json()["stock"]


def held_quantity(app, product_id: str) -> int:
    db = app.extensions["database"]
    with db.transaction() as connection:
        total = connection.execute(
            sa.select(sa.func.coalesce(sa.func.sum(reservations.c.quantity), 0)).where(
                reservations.c.product_id == product_id, reservations.c.state == HELD
            )
        ).scalar_one()
    return int(total)


def test_fifty_buyers_of_ten_items_exactly_ten_succeed(product_app, create_product):
    product = create_product(stock=10)["id"]

    def buy(_: int) -> int:
        response = product_app.test_client().post(
            f"/api/v1/products/{product}/reserve",
            json={"reservationId": str(uuid.uuid4()), "quantity": 1},
            headers=SERVICE,
        )
        return response.status_code

    statuses = run_together(50, buy)
    assert statuses.count(200) == 10
    assert statuses.count(409) == 40
    assert stock_of(product_app, product) == 0
    assert held_quantity(product_app, product) == 10


def test_the_same_reservation_sent_twenty_times_at_once_moves_stock_once(
    product_app, create_product
):
    product = create_product(stock=100)["id"]
    rid = str(uuid.uuid4())

    def send(_: int) -> tuple[int, Any]:
        response = product_app.test_client().post(
            f"/api/v1/products/{product}/reserve",
            json={"reservationId": rid, "quantity": 7},
            headers=SERVICE,
        )
        return response.status_code, response.get_json()

    answers = run_together(20, send)
    assert {status for status, _ in answers} == {200}
    assert stock_of(product_app, product) == 93
    assert held_quantity(product_app, product) == 7


def test_the_same_refused_reservation_sent_twenty_times_at_once_is_refused_every_time(
    product_app, create_product
):
    """They queue on the product row, not on the reservation's key (where every waiter would
    become a deadlock victim when the first rolls back), and each is refused on its own."""
    product = create_product(stock=3)["id"]
    rid = str(uuid.uuid4())

    def send(_: int) -> int:
        return (
            product_app.test_client()
            .post(
                f"/api/v1/products/{product}/reserve",
                json={"reservationId": rid, "quantity": 5},
                headers=SERVICE,
            )
            .status_code
        )

    assert set(run_together(20, send)) == {409}
    assert stock_of(product_app, product) == 3
    assert held_quantity(product_app, product) == 0


def test_the_same_batch_sent_twenty_times_at_once_moves_stock_once(product_app, create_product):
    a, b = create_product(stock=50)["id"], create_product(stock=50)["id"]
    rid = str(uuid.uuid4())
    body = {
        "reservationId": rid,
        "items": [{"productId": a, "quantity": 3}, {"productId": b, "quantity": 4}],
    }

    def send(_: int) -> int:
        return (
            product_app.test_client()
            .post("/api/v1/reservations", json=body, headers=SERVICE)
            .status_code
        )

    assert set(run_together(20, send)) == {201}
    assert (stock_of(product_app, a), stock_of(product_app, b)) == (47, 46)


def test_the_same_release_sent_twenty_times_at_once_returns_stock_once(product_app, create_product):
    product = create_product(stock=10)["id"]
    rid = str(uuid.uuid4())
    client = product_app.test_client()
    client.post(
        "/api/v1/reservations",
        json={"reservationId": rid, "items": [{"productId": product, "quantity": 6}]},
        headers=SERVICE,
    )

    def send(_: int) -> int:
        return (
            product_app.test_client()
            .post(f"/api/v1/reservations/{rid}/release", headers=SERVICE)
            .status_code
        )

    assert set(run_together(20, send)) == {200}
    assert stock_of(product_app, product) == 10


def test_batches_in_opposite_orders_never_deadlock_a_client(product_app, create_product):
    products = [create_product(stock=1000)["id"] for _ in range(4)]

    def batch(index: int) -> int:
        # Half the batches name the products forwards, half backwards.
        ordered = products if index % 2 == 0 else list(reversed(products))
        response = product_app.test_client().post(
            "/api/v1/reservations",
            json={
                "reservationId": str(uuid.uuid4()),
                "items": [{"productId": p, "quantity": 1 + index % 3} for p in ordered],
            },
            headers=SERVICE,
        )
        return response.status_code

    statuses = run_together(30, batch)
    assert set(statuses) == {201}, statuses
    taken = sum(1 + i % 3 for i in range(30))
    for product in products:
        assert stock_of(product_app, product) == 1000 - taken
        assert stock_of(product_app, product) + held_quantity(product_app, product) == 1000


def test_reserves_and_releases_racing_keep_stock_plus_held_constant(product_app, create_product):
    products = [create_product(stock=20)["id"] for _ in range(3)]
    rids = [str(uuid.uuid4()) for _ in range(12)]

    def work(index: int) -> int:
        client = product_app.test_client()
        rid = rids[index % len(rids)]
        if index < len(rids):
            return reserve_two_of_each(client, rid, products, forwards=index % 2 == 1)
        return client.post(f"/api/v1/reservations/{rid}/release", headers=SERVICE).status_code

    statuses = run_together(2 * len(rids), work)
    assert set(statuses) <= {200, 201, 409}, statuses
    assert_stock_plus_held(product_app, products, 20)


def reserve_two_of_each(client, rid: str, products: list[str], *, forwards: bool) -> int:
    ordered = products if forwards else list(reversed(products))
    return client.post(
        "/api/v1/reservations",
        json={"reservationId": rid, "items": [{"productId": p, "quantity": 2} for p in ordered]},
        headers=SERVICE,
    ).status_code


def assert_stock_plus_held(app, products: list[str], initial: int) -> None:
    for product in products:
        stock, held = stock_of(app, product), held_quantity(app, product)
        assert stock >= 0
        assert stock + held == initial


def test_reserves_and_batch_releases_racing_keep_stock_plus_held_constant(
    product_app, create_product
):
    """Each batch release names reservations that may not have arrived yet (their release is
    remembered, the late reserve refused) or that arrive while it runs (it then releases each
    alone): whatever the interleaving, no stock is lost or made."""
    products = [create_product(stock=40)["id"] for _ in range(3)]
    rids = [str(uuid.uuid4()) for _ in range(16)]

    def work(index: int) -> int:
        client = product_app.test_client()
        if index < len(rids):
            return reserve_two_of_each(client, rids[index], products, forwards=index % 2 == 1)
        # Overlapping batches, in both orders.
        batch = rids[index % 4 :: 2] if index % 2 else list(reversed(rids[index % 4 :: 2]))
        return client.post(
            "/api/v1/reservations/release", json={"reservationIds": batch}, headers=SERVICE
        ).status_code

    statuses = run_together(2 * len(rids), work)
    assert set(statuses) <= {200, 201, 409}, statuses
    assert_stock_plus_held(product_app, products, 40)


def test_a_reservation_arriving_during_a_batch_release_is_released_exactly_once(
    product_app, create_product, monkeypatch
):
    """The batch read no lines for an id whose reservation then committed: its release marker
    collides, the batch rolls back, and each is released alone, the stock back once."""
    product = create_product(stock=10)["id"]
    early, late = str(uuid.uuid4()), str(uuid.uuid4())
    client = product_app.test_client()
    for rid, quantity in ((early, 1), (late, 3)):
        client.post(
            "/api/v1/reservations",
            json={"reservationId": rid, "items": [{"productId": product, "quantity": quantity}]},
            headers=SERVICE,
        )
    read = ReservationRepository.lines_of

    def as_if_late_had_not_arrived(self, reservation_ids, **kwargs):
        return {
            rid: lines
            for rid, lines in read(self, reservation_ids, **kwargs).items()
            if rid != late
        }

    monkeypatch.setattr(ReservationRepository, "lines_of", as_if_late_had_not_arrived)
    response = client.post(
        "/api/v1/reservations/release", json={"reservationIds": [early, late]}, headers=SERVICE
    )

    assert response.status_code == 200
    assert [r["items"][0]["quantity"] for r in response.get_json()["results"]] == [1, 3]
    assert stock_of(product_app, product) == 10
    assert held_quantity(product_app, product) == 0


OPERATIONS = st.lists(
    st.one_of(
        st.tuples(st.just("reserve"), st.integers(0, 3), st.integers(0, 1), st.integers(1, 6)),
        st.tuples(st.just("release"), st.integers(0, 3), st.integers(0, 1), st.just(0)),
        st.tuples(st.just("batch"), st.integers(0, 3), st.just(0), st.integers(1, 6)),
        st.tuples(st.just("release_all"), st.integers(0, 3), st.just(0), st.just(0)),
    ),
    min_size=1,
    max_size=10,
)


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(operations=OPERATIONS)
def test_stock_plus_held_always_equals_the_initial_stock(product_app, operations):
    """Whatever sequence of reserves, retries and releases: stock + held == initial, stock >= 0."""
    client = product_app.test_client()
    initial = 8
    products = [
        client.post(
            "/api/v1/products",
            json={"name": "prop", "price": "1.00", "stock": initial},
            headers=ADMIN,
        ).get_json()["id"]
        for _ in range(2)
    ]
    rids = [str(uuid.uuid4()) for _ in range(4)]
    for kind, rid_index, product_index, quantity in operations:
        rid, product = rids[rid_index], products[product_index]
        if kind == "reserve":
            response = client.post(
                f"/api/v1/products/{product}/reserve",
                json={"reservationId": rid, "quantity": quantity},
                headers=SERVICE,
            )
            assert response.status_code in {200, 409}
        elif kind == "release":
            response = client.post(
                f"/api/v1/products/{product}/release", json={"reservationId": rid}, headers=SERVICE
            )
            assert response.status_code in {200, 404}
        elif kind == "batch":
            response = client.post(
                "/api/v1/reservations",
                json={
                    "reservationId": rid,
                    "items": [{"productId": p, "quantity": quantity} for p in products],
                },
                headers=SERVICE,
            )
            assert response.status_code in {201, 409}
        else:
            assert (
                client.post(f"/api/v1/reservations/{rid}/release", headers=SERVICE).status_code
                == 200
            )
        for p in products:
            stock = stock_of(product_app, p)
            assert stock >= 0
            assert stock + held_quantity(product_app, p) == initial


class DeadlockingDatabase(Database):
    """The real database, except that the first `victims` transactions are chosen as deadlock
    victims when they commit, as InnoDB does to one side of a lock cycle."""

    def __init__(self, engine, victims: int) -> None:
        super().__init__(engine)
        self.victims = victims

    @contextmanager
    def transaction(self):
        with super().transaction() as connection:
            yield connection
            if self.victims > 0:
                self.victims -= 1
                raise OperationalError("COMMIT", {}, _Deadlock(1213, "Deadlock found"))


class _Deadlock(Exception):
    pass


def test_a_deadlock_victim_is_retried_and_takes_stock_once(product_app, create_product):
    product = create_product(stock=5)["id"]
    db = DeadlockingDatabase(product_app.extensions["database"].engine, victims=2)
    held = ProductService(db).reserve_items(str(uuid.uuid4()), [(product, 2)])
    assert held.state == HELD
    assert stock_of(product_app, product) == 3
    assert held_quantity(product_app, product) == 2


def test_a_deadlock_that_outlasts_the_retries_is_503_not_500(
    product_app, make_product_app, create_product
):
    product = create_product(stock=5)["id"]
    app = make_product_app()
    app.extensions["product_service"] = ProductService(
        DeadlockingDatabase(app.extensions["database"].engine, victims=100)
    )
    response = app.test_client().post(
        f"/api/v1/products/{product}/reserve",
        json={"reservationId": str(uuid.uuid4()), "quantity": 1},
        headers=SERVICE,
    )
    assert response.status_code == 503
    assert int(response.headers["Retry-After"]) >= 1
    assert stock_of(product_app, product) == 5
