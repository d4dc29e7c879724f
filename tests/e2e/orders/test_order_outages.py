"""Dependencies that fail while orders are placed: nothing is lost, nothing stays held."""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
import threading
import time
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from typing import Any

import pytest
import requests

from tests.e2e.conftest import OrderStack
from tests.e2e.orders.shop import (
    all_orders,
    assert_problem,
    conforming,
    get_order,
    line,
    list_orders,
    place_order,
    placed,
    random_id,
    stock_of,
    transition,
)
from tests.support.events import eventually
from tests.support.processes import RunningProcess, free_port, run_cli, start_service

pytestmark = pytest.mark.e2e


@dataclass
class Catalog:
    """A product service of its own, which a test may kill and bring back on the same port."""

    env: dict[str, str]
    log_dir: Any
    port: int = field(default_factory=free_port)
    running: RunningProcess | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        self.running = start_service(
            "product_service", self.env, self.log_dir, port=self.port, name="product_service-outage"
        )

    def kill(self) -> None:
        assert self.running is not None
        self.running.kill()

    def stop(self) -> None:
        if self.running is not None:
            self.running.stop()


@pytest.fixture
def catalog(databases, product_service_env, log_dir):
    env = {**product_service_env, "PRODUCT_DATABASE_URL": databases.create("e2e_products")}
    run_cli("product_service", "prestart", env=env)
    catalog = Catalog(env, log_dir)
    catalog.start()
    yield catalog
    catalog.stop()


@pytest.fixture
def own_order_stack(databases, log_dir, user_service, local_sqs):
    """Order services and relays for one test, stopped when it ends."""
    stack = OrderStack(databases, log_dir, user_service, local_sqs)
    yield stack
    stack.stop_all()


class OrderPlacer:
    """Threads placing small orders back to back until stopped; keeps every answer."""

    def __init__(self, url: str, buyers: list[Any], products: list[dict[str, Any]]) -> None:
        self._url, self._buyers, self._products = url, buyers, products
        self._stop = threading.Event()
        self.answers: list[tuple[int, dict[str, Any], dict[str, str]]] = []
        self._lock = threading.Lock()
        self._threads = [threading.Thread(target=self._place, args=(i,)) for i in range(4)]

    def __enter__(self) -> OrderPlacer:
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join()

    def _place(self, index: int) -> None:
        chooser = random.Random(index)
        buyer = self._buyers[index % len(self._buyers)]
        while not self._stop.is_set():
            chosen = chooser.sample(self._products, chooser.randint(1, len(self._products)))
            items = [line(p, chooser.randint(1, 3)) for p in chosen]
            try:
                response = place_order(self._url, buyer, items)
                answer = (response.status_code, response.json(), dict(response.headers))
            except (requests.RequestException, ValueError) as exc:
                answer = (-1, {"error": repr(exc)}, {})
            with self._lock:
                self.answers.append(answer)
            time.sleep(0.02)


def test_orders_placed_while_the_product_service_dies_leave_no_stock_held(
    own_order_stack, catalog, admin, new_customer, new_product
):
    order_env = own_order_stack.environment(
        catalog.url, ATTEMPT_REPAIR_AFTER_S="2", CANCEL_FINISH_AFTER_S="1"
    )
    orders = own_order_stack.service(order_env, name="order_service-outage")
    own_order_stack.worker(order_env, name="order_worker-outage")
    products = [new_product(stock=100_000, url=catalog.url) for _ in range(3)]
    buyers = [new_customer(), new_customer()]

    to_cancel = placed(orders.url, buyers[0], [line(products[0], 5)])

    with OrderPlacer(orders.url, buyers, products) as placer:
        time.sleep(1.5)
        catalog.kill()
        # Cancelling cannot give the stock back now: 503, and the cancel has begun: the order
        # shows PENDING with its reason, and can no longer be paid.
        refused = transition(orders.url, buyers[0], to_cancel["id"], "cancel")
        assert_problem(refused, 503)
        assert int(refused.headers["Retry-After"]) >= 1
        begun = get_order(orders.url, buyers[0], to_cancel["id"]).json()
        assert (begun["status"], begun["cancelReason"]) == ("PENDING", "customer")
        assert_problem(transition(orders.url, buyers[0], to_cancel["id"], "pay"), 409)
        # A client that retries with its Idempotency-Key, as a 503 invites it to.
        key = random_id()
        first_try = place_order(orders.url, buyers[1], [line(products[1], 4)], key=key)
        assert_problem(first_try, 503)
        time.sleep(2.5)
        catalog.start()
        time.sleep(1.5)
    # The worker finishes the begun cancel once the product service is back.
    eventually(
        lambda: get_order(orders.url, buyers[0], to_cancel["id"]).json()["status"] == "CANCELLED",
        timeout_s=20,
        what="the worker to finish the begun cancel",
    )
    cancelled = transition(orders.url, buyers[0], to_cancel["id"], "cancel")
    assert cancelled.status_code == 200, cancelled.text
    assert cancelled.json()["cancelReason"] == "customer"
    retries: list[requests.Response] = []

    def retried() -> bool:
        retries.append(place_order(orders.url, buyers[1], [line(products[1], 4)], key=key))
        if retries[-1].status_code == 201:
            return True
        time.sleep(0.5)  # less than the Retry-After it was given, to see the 409s too
        return False

    # In flight (409) until the worker has given back what the failed try may hold.
    eventually(retried, timeout_s=20, what="the retried key to place its order")
    assert {r.status_code for r in retries[:-1]} <= {409, 503}, [r.text for r in retries]
    keyed_order = retries[-1].json()["id"]
    again = place_order(orders.url, buyers[1], [line(products[1], 4)], key=key)
    assert (again.status_code, again.json()["id"]) == (200, keyed_order)

    statuses = Counter(status for status, _, _ in placer.answers)
    assert set(statuses) <= {201, 503}, [a for a in placer.answers if a[0] not in {201, 503}][:5]
    assert statuses[201] and statuses[503], statuses
    for status, _, headers in placer.answers:
        if status == 503:
            assert int(headers["Retry-After"]) >= 1
    created = {body["id"] for status, body, _ in placer.answers if status == 201}

    def existing_orders() -> list[dict[str, Any]]:
        return [o for b in buyers for o in all_orders(orders.url, admin, userId=b.id)]

    assert {o["id"] for o in existing_orders()} == created | {to_cancel["id"], keyed_order}

    def held_and_ordered() -> tuple[dict[str, int], dict[str, int]]:
        ordered: dict[str, int] = defaultdict(int)
        for order in existing_orders():
            if order["status"] == "CANCELLED":
                continue
            for item in order["items"]:
                ordered[item["productId"]] += item["quantity"]
        held = {p["id"]: p["stock"] - stock_of(catalog.url, p) for p in products}
        return held, {p["id"]: ordered[p["id"]] for p in products}

    # Attempts cut off mid-reservation are released by the worker after ATTEMPT_REPAIR_AFTER_S.
    deadline = time.monotonic() + 30
    held, ordered = held_and_ordered()
    while held != ordered and time.monotonic() < deadline:
        time.sleep(0.5)
        held, ordered = held_and_ordered()
    assert held == ordered, f"held {held} but ordered {ordered} ({statuses})"


def outbox_pending(order_env: dict[str, str]) -> int:
    """`python -m order_service outbox-status --json`, as an operator would run it."""
    done = subprocess.run(
        [sys.executable, "-m", "order_service", "outbox-status", "--json"],
        env={**os.environ, **order_env},
        capture_output=True,
        text=True,
        check=True,
    )
    return int(json.loads(done.stdout)["pending"])


def test_events_of_orders_placed_while_sqs_is_down_arrive_once_it_is_back(
    order_service, order_service_env, order_worker, order_events, local_sqs, customer, new_product
):
    product = new_product(stock=100_000)
    # The relay works before the outage (and has resolved the queue URL).
    warmup = placed(order_service.url, customer, [line(product)])
    order_events.wait_for_types(warmup["id"], ["order_created"], timeout_s=30)

    local_sqs.stop()
    try:
        during = []
        started = time.monotonic()
        while time.monotonic() - started < 10:
            during.append(placed(order_service.url, customer, [line(product)])["id"])
            time.sleep(0.1)
        # Still ready: the outbox holds the events, so the service stays in service.
        ready = conforming(requests.get(f"{order_service.url}/health/ready", timeout=20))
        assert ready.status_code == 200, ready.text
        assert ready.json() == {"status": "ok", "queue": "unreachable"}
        assert outbox_pending(order_service_env) >= len(during)
    finally:
        local_sqs.start()

    def arrived() -> bool:
        return all(order_events.event_types(order_id) for order_id in during)

    eventually(arrived, timeout_s=60, what=f"order_created of {len(during)} orders")
    time.sleep(1.0)
    for order_id in during:
        events = order_events.events(order_id)
        assert [e.event_type for e in events.values()] == ["order_created"], events
    ready = conforming(requests.get(f"{order_service.url}/health/ready", timeout=20))
    assert ready.status_code == 200, ready.text
    assert ready.json() == {"status": "ok", "queue": "ok"}
    eventually(lambda: outbox_pending(order_service_env) == 0, what="an empty outbox")


def test_an_order_placed_while_the_user_service_is_down_is_503_and_holds_nothing(
    user_service,
    user_service_env,
    log_dir,
    order_service,
    product_service,
    new_customer,
    new_product,
):
    buyer = new_customer()
    product = new_product(stock=5)
    # The order service has the token keys cached, but has never looked this buyer up.
    assert list_orders(order_service.url, buyer).status_code == 200
    port = int(user_service.url.rsplit(":", 1)[1])
    user_service.kill()
    try:
        response = place_order(order_service.url, buyer, [line(product, 2)])
        assert_problem(response, 503)
        assert int(response.headers["Retry-After"]) >= 1
        assert stock_of(product_service.url, product) == 5
    finally:
        # Back on its port, so every service configured with its URL finds it again.
        user_service.process = start_service(
            "user_service", user_service_env, log_dir, port=port
        ).process
    assert list_orders(order_service.url, buyer).json()["items"] == []
    retried = place_order(order_service.url, buyer, [line(product, 2)])
    assert retried.status_code == 201, retried.text
    assert stock_of(product_service.url, product) == 3


def test_events_outlive_a_crashed_relay(
    order_stack, order_service, order_service_env, order_worker, order_events, customer, new_product
):
    product = new_product()
    order_worker.kill()
    during = [placed(order_service.url, customer, [line(product)])["id"] for _ in range(5)]
    time.sleep(0.5)
    assert not any(order_events.event_types(order_id) for order_id in during)
    # The session's relay comes back as a new process; stop_all stops it at the end.
    order_worker.process = order_stack.worker(order_service_env, name="order_worker").process

    def arrived() -> bool:
        return all(order_events.event_types(order_id) == ["order_created"] for order_id in during)

    eventually(arrived, timeout_s=30, what="order_created of the orders placed without a relay")
