"""`make demo`: the whole shop flow against a running system, narrated request by request.

It consumes `order-events` while it runs (and says so): on a developer's system nothing
else reads that queue, and a reader that did not delete would push messages into the DLQ.
"""

from __future__ import annotations

import secrets
import threading
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import click
import requests

from shopctl import queues
from shopctl.api import Answer, ShopApi
from shopctl.config import Endpoints, QueueSettings
from shopctl.errors import ShopctlError, Unreachable
from shopctl.formatting import format_event, short_id

# An order left unpaid is waited for only when it expires within this; a system started with
# the default 30-minute ORDER_PAYMENT_TIMEOUT_S is told how to show it instead.
DEFAULT_EXPIRY_WAIT_S = 60.0
SHORT_TIMEOUT_HINT = "ORDER_PAYMENT_TIMEOUT_S=10 make run"


class DemoFailed(ShopctlError):
    pass


class Narrator:
    """One lock for all output, so events arriving on the consumer thread never split a step."""

    def __init__(self) -> None:
        # Re-entrant: a request and its answer are said under one hold, line by line.
        self.lock = threading.RLock()
        self._steps = 0

    def step(self, title: str) -> None:
        self._steps += 1
        self.say("")
        self.say(click.style(f"── {self._steps}. {title} ", bold=True).ljust(72, "─"))

    def say(self, text: str) -> None:
        with self.lock:
            click.echo(text)

    def event(self, text: str) -> None:
        self.say(click.style("  ⚡ order-events │ ", fg="yellow") + text)


@dataclass
class EventWatcher:
    """Consumes `order-events` on a thread, printing each message as it arrives."""

    client: Any
    queue_url: str
    narrator: Narrator
    seen: list[tuple[str, str]] = field(default_factory=list)
    # Each cancelled order's `reason`, as its order_cancelled event said it.
    reasons: dict[str, str] = field(default_factory=dict)
    failure: BaseException | None = None
    _stop: threading.Event = field(default_factory=threading.Event)
    _changed: threading.Condition = field(default_factory=threading.Condition)
    _thread: threading.Thread | None = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="order-events", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        try:
            while not self._stop.is_set():
                events = queues.receive(self.client, self.queue_url, wait_s=1)
                for event in events:
                    self.narrator.event(format_event(event.body, event.attributes))
                    order_id = str(event.body.get("orderId"))
                    with self._changed:
                        self.seen.append((order_id, str(event.body.get("eventType"))))
                        if "reason" in event.body:
                            self.reasons[order_id] = str(event.body["reason"])
                        self._changed.notify_all()
                queues.delete(self.client, self.queue_url, events)
        except Exception as exc:
            self.failure = exc
            with self._changed:
                self._changed.notify_all()

    def wait_for(self, wanted: list[tuple[str, str]], timeout_s: float) -> list[tuple[str, str]]:
        """Blocks until every wanted (orderId, eventType) was seen; returns the missing ones."""
        deadline = time.monotonic() + timeout_s
        with self._changed:
            while True:
                missing = [pair for pair in wanted if pair not in self.seen]
                remaining = deadline - time.monotonic()
                if not missing or remaining <= 0 or self.failure:
                    return missing
                self._changed.wait(remaining)

    def stop(self) -> None:
        self._stop.set()
        if self._thread:
            self._thread.join(timeout=5)


@dataclass
class Demo:
    endpoints: Endpoints
    admin: tuple[str, str]
    narrator: Narrator
    api: ShopApi
    suffix: str = field(default_factory=lambda: secrets.token_hex(3))
    # Set by the walk-through for the unpaid order that follows it.
    customer_token: str = ""
    desk: str = ""

    def expect(self, answer: Answer, status: int, what: str) -> Answer:
        if answer.status != status:
            detail = answer.field("detail") or answer.field("title") or answer.body
            raise DemoFailed(f"{what}: expected {status}, got {answer.status}: {detail}")
        return answer

    def call(self, title: str, status: int, method: str, url: str, **kwargs: Any) -> Answer:
        with self.narrator.lock:
            self.narrator.step(title)
            answer = self.api.call(method, url, **kwargs)
        return self.expect(answer, status, title)

    def stock(self, product_id: str) -> int:
        url = f"{self.endpoints.product}/api/v1/products/{product_id}"
        answer = self.api.call("GET", url, quiet=True)
        return int(self.expect(answer, 200, "read stock").field("stock"))


def run_demo(
    endpoints: Endpoints,
    queue_settings: QueueSettings,
    admin: tuple[str, str] | None,
    *,
    events_timeout_s: float = 30.0,
    expiry_wait_s: float = DEFAULT_EXPIRY_WAIT_S,
) -> None:
    narrator = Narrator()
    _require_services(endpoints)
    if admin is None:
        raise DemoFailed(
            "no admin credentials: set ADMIN_USERNAME and ADMIN_PASSWORD (or run `make run` "
            "once: it writes var/credentials.env; compose reads them from .env)"
        )
    client = queues.sqs_client(queue_settings)
    url = queues.queue_url(client, queue_settings.queue)
    watcher = EventWatcher(client, url, narrator)
    narrator.say(
        click.style("Shop demo", bold=True)
        + f" — users {endpoints.user}, products {endpoints.product}, orders {endpoints.order}"
    )
    narrator.say(
        f"This demo CONSUMES the queue {queue_settings.queue} at "
        f"{queue_settings.endpoint}: each event is printed (⚡) and deleted."
    )
    watcher.start()
    api = ShopApi(show=narrator.say)
    try:
        demo = Demo(endpoints, admin, narrator, api)
        wanted = _walk_through(demo)
        expiring = _leave_an_order_unpaid(demo, expiry_wait_s)
        wait_s = events_timeout_s
        if expiring is not None:
            order_id, expires_in_s = expiring
            wanted += [(order_id, "order_created"), (order_id, "order_cancelled")]
            wait_s += expires_in_s
        narrator.step(f"Wait for the order events (up to {wait_s:.0f} s)")
        missing = watcher.wait_for(wanted, wait_s)
        if watcher.failure:
            raise watcher.failure
        if missing:
            listed = ", ".join(f"{kind} of order {short_id(order)}" for order, kind in missing)
            raise DemoFailed(
                f"no event within {events_timeout_s:.0f} s for: {listed} "
                "(is the order worker running? try `shopctl outbox status`)"
            )
        narrator.say(f"  all {len(wanted)} events arrived.")
        if expiring is not None:
            _check_expired(demo, watcher, expiring[0])
    finally:
        watcher.stop()
        api.close()
    narrator.say("")
    narrator.say(click.style("Demo complete.", fg="green", bold=True))
    narrator.say(
        f"Next: `shopctl events tail` in one terminal, and try the API at {endpoints.order}/docs "
        "(Authorize with a token from POST /api/v1/login)."
    )


def _walk_through(demo: Demo) -> list[tuple[str, str]]:
    users, products, orders = demo.endpoints.user, demo.endpoints.product, demo.endpoints.order
    customer = {
        "username": f"demo-{demo.suffix}",
        "email": f"demo-{demo.suffix}@example.com",
        "password": f"demo-password-{demo.suffix}",
    }
    registered = demo.call(
        "Register a customer", 201, "POST", f"{users}/api/v1/users", body=customer
    )
    login = {"username": customer["username"], "password": customer["password"]}
    token = demo.call("Log in as the customer", 200, "POST", f"{users}/api/v1/login", body=login)
    customer_token = str(token.field("accessToken"))
    demo.customer_token = customer_token
    address = demo.call(
        "The customer adds a shipping address to their address book",
        201,
        "POST",
        f"{users}/api/v1/users/{registered.field('id')}/addresses",
        token=customer_token,
        body={
            "label": "Home",
            "recipient": "Demo Customer",
            "line1": "1 Example Street",
            "city": "Lisbon",
            "postalCode": "1000-001",
            "country": "PT",
        },
    )
    admin_login = {"username": demo.admin[0], "password": demo.admin[1]}
    admin = demo.call("Log in as the admin", 200, "POST", f"{users}/api/v1/login", body=admin_login)
    admin_token = str(admin.field("accessToken"))

    catalog = [
        ("Walnut desk", "Solid walnut, 140 x 70 cm", "249.00", 10),
        ("Brass lamp", "A desk lamp in brushed brass", "59.90", 5),
    ]
    product_ids = []
    for name, description, price, stock in catalog:
        created = demo.call(
            f"The admin adds a product: {name}",
            201,
            "POST",
            f"{products}/api/v1/products",
            token=admin_token,
            body={
                "name": f"{name} {demo.suffix}",
                "description": description,
                "price": price,
                "stock": stock,
            },
        )
        product_ids.append(str(created.field("id")))
    desk, lamp = product_ids
    demo.desk = desk
    demo.call(
        "Anyone searches the catalog",
        200,
        "GET",
        f"{products}/api/v1/products/search?q={demo.suffix}&inStock=true",
    )

    key = f"demo-{demo.suffix}-first"
    first_order = {
        "items": [{"productId": desk, "quantity": 2}, {"productId": lamp, "quantity": 1}],
        "shippingAddressId": address.field("id"),
    }
    placed = demo.call(
        "The customer places an order to that address (with an Idempotency-Key)",
        201,
        "POST",
        f"{orders}/api/v1/orders",
        token=customer_token,
        body=first_order,
        headers={"Idempotency-Key": key},
    )
    paid_id = str(placed.field("id"))
    again = demo.call(
        "The same request again (a retry after a lost answer): 200, the same order",
        200,
        "POST",
        f"{orders}/api/v1/orders",
        token=customer_token,
        body=first_order,
        headers={"Idempotency-Key": key},
    )
    if again.field("id") != paid_id:
        raise DemoFailed(f"the retry made a new order {again.field('id')} instead of {paid_id}")
    demo.narrator.say(f"  same order id both times: {paid_id}")
    _show_stock(demo, "Stock after the order", {"desk": (desk, 10), "lamp": (lamp, 5)})

    demo.call(
        "The customer pays the order",
        200,
        "POST",
        f"{orders}/api/v1/orders/{paid_id}/pay",
        token=customer_token,
    )
    second = demo.call(
        "The customer places a second order",
        201,
        "POST",
        f"{orders}/api/v1/orders",
        token=customer_token,
        body={"items": [{"productId": lamp, "quantity": 2}]},
        headers={"Idempotency-Key": f"demo-{demo.suffix}-second"},
    )
    cancelled_id = str(second.field("id"))
    _show_stock(demo, "Stock while the second order holds 2 lamps", {"lamp": (lamp, 5)})
    demo.call(
        "The customer cancels the second order: its stock comes back",
        200,
        "POST",
        f"{orders}/api/v1/orders/{cancelled_id}/cancel",
        token=customer_token,
    )
    _show_stock(demo, "Stock after the cancel", {"desk": (desk, 10), "lamp": (lamp, 5)})
    return [
        (paid_id, "order_created"),
        (paid_id, "order_paid"),
        (cancelled_id, "order_created"),
        (cancelled_id, "order_cancelled"),
    ]


def _leave_an_order_unpaid(demo: Demo, expiry_wait_s: float) -> tuple[str, float] | None:
    """Places an order nobody pays. Returns its id and the seconds until its expiresAt when
    the running system's payment timeout is short enough to wait for; otherwise says how to
    start a system that shows it, and returns None."""
    placed = demo.call(
        "The customer places a third order and never pays it",
        201,
        "POST",
        f"{demo.endpoints.order}/api/v1/orders",
        token=demo.customer_token,
        body={"items": [{"productId": demo.desk, "quantity": 1}]},
    )
    expires_at = datetime.fromisoformat(str(placed.field("expiresAt")).replace("Z", "+00:00"))
    expires_in_s = max(0.0, (expires_at - datetime.now(UTC)).total_seconds())
    if expires_in_s > expiry_wait_s:
        demo.narrator.say(
            f"  it expires at {placed.field('expiresAt')}, in {expires_in_s:.0f} s: too long "
            f"to wait for here. To see the worker cancel it with reason payment_timeout, start "
            f"the system with a short timeout (`{SHORT_TIMEOUT_HINT}`) and run the demo again."
        )
        return None
    demo.narrator.say(
        f"  it expires at {placed.field('expiresAt')} (in {expires_in_s:.0f} s); then the "
        "worker cancels it as if by its owner, and its stock comes back."
    )
    return str(placed.field("id")), expires_in_s


def _check_expired(demo: Demo, watcher: EventWatcher, order_id: str) -> None:
    reason = watcher.reasons.get(order_id)
    if reason != "payment_timeout":
        raise DemoFailed(f"the unpaid order was cancelled with reason {reason!r}")
    demo.call(
        "The unpaid order, after its expiresAt: CANCELLED, cancelReason payment_timeout",
        200,
        "GET",
        f"{demo.endpoints.order}/api/v1/orders/{order_id}",
        token=demo.customer_token,
    )
    _show_stock(demo, "Stock after the expiry", {"desk": (demo.desk, 10)})


def _show_stock(demo: Demo, title: str, products: dict[str, tuple[str, int]]) -> None:
    demo.narrator.step(title)
    for label, (product_id, initial) in products.items():
        now = demo.stock(product_id)
        demo.narrator.say(
            f"  GET /api/v1/products/{short_id(product_id)}: {label:<5} {initial} → {now}"
        )


def _require_services(endpoints: Endpoints) -> None:
    for name, url in (
        ("user service", endpoints.user),
        ("product service", endpoints.product),
        ("order service", endpoints.order),
    ):
        try:
            requests.get(f"{url}/health", timeout=3).raise_for_status()
        except requests.RequestException as exc:
            raise Unreachable(
                f"the {name} does not answer at {url} ({type(exc).__name__}); "
                "start the system with `make run` (or set its *_SERVICE_URL)"
            ) from None
