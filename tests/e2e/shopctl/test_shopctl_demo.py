"""`make demo` = `shopctl demo` against the real services, the relay and LocalStack."""

from __future__ import annotations

import re
import uuid

import pytest

from devstack import stack
from tests.e2e.conftest import ADMIN
from tests.e2e.shopctl.conftest import shopctl

pytestmark = pytest.mark.e2e


@pytest.fixture
def demo_system(order_stack, user_service, product_service, local_sqs):
    """An order service and relay of its own on a private queue, so no other test's consumer
    (the session's `order_events`) takes the demo's events."""
    queue = f"demo-{uuid.uuid4().hex[:10]}"
    client = local_sqs.client()
    queue_url = client.create_queue(QueueName=queue)["QueueUrl"]
    # A short payment timeout, as `ORDER_PAYMENT_TIMEOUT_S=5 make run` would have: the demo
    # waits for its unpaid order to expire.
    env = order_stack.environment(
        product_service.url, ORDER_EVENTS_QUEUE=queue, ORDER_PAYMENT_TIMEOUT_S="5"
    )
    orders = order_stack.service(env, name=f"order_service_{queue}")
    worker = order_stack.worker(env, name=f"order_worker_{queue}")
    yield {
        "USER_SERVICE_URL": user_service.url,
        "PRODUCT_SERVICE_URL": product_service.url,
        "ORDER_SERVICE_URL": orders.url,
        "SQS_ENDPOINT_URL": local_sqs.endpoint,
        "ORDER_EVENTS_QUEUE": queue,
        "ADMIN_USERNAME": ADMIN[0],
        "ADMIN_PASSWORD": ADMIN[1],
    }
    worker.stop()
    orders.stop()
    client.delete_queue(QueueUrl=queue_url)


def test_demo_walks_the_whole_flow_and_shows_the_events(demo_system, tmp_path):
    done = shopctl("demo", "--events-timeout", "30", env=demo_system, timeout_s=180)
    artifacts = tmp_path / "artifacts"
    artifacts.mkdir()
    (artifacts / "demo.txt").write_text(done.stdout + done.stderr)

    assert done.returncode == 0, f"{done.stdout[-4000:]}\n{done.stderr}"
    out = done.stdout
    assert "Traceback" not in out + done.stderr
    assert "CONSUMES" in out
    # Each step shows the request and the answer.
    assert "→ POST " + demo_system["USER_SERVICE_URL"] + "/api/v1/users" in out
    assert "→ POST " + demo_system["ORDER_SERVICE_URL"] + "/api/v1/orders" in out
    assert "Idempotency-Key: demo-" in out
    assert "********" in out, "the password is never printed"
    # The idempotent repeat: 201 then 200 with the same order id.
    placed = re.search(r"places an order.*?← (\d+) .*?\"id\": \"([0-9a-f-]{36})\"", out, re.S)
    repeated = re.search(
        r"The same request again.*?← (\d+) .*?\"id\": \"([0-9a-f-]{36})\"", out, re.S
    )
    assert placed and repeated
    assert placed.group(1) == "201"
    assert repeated.group(1) == "200"
    assert placed.group(2) == repeated.group(2)
    # Stock moves: the desk went 10 → 8; the lamp holds 2 for the second order, then gets them back.
    assert re.search(r"desk\s+10 → 8", out)
    assert re.search(r"lamp\s+5 → 2", out)
    assert re.search(r"lamp\s+5 → 4", out)
    # The events, printed as they arrived.
    events = [line for line in out.splitlines() if "⚡ order-events" in line]
    assert len(events) >= 4
    for kind in ("order_created", "order_paid", "order_cancelled"):
        assert any(kind in line for line in events), kind
    # The order with a shipping address from the customer's address book.
    assert re.search(r"/addresses\n.*?← 201", out, re.S)
    assert '"shippingAddress": {' in out
    # The unpaid order expires: the worker cancels it with reason payment_timeout.
    assert any("order_cancelled" in line and "reason payment_timeout" in line for line in events)
    assert '"cancelReason": "payment_timeout"' in out
    assert "all 6 events arrived" in out
    assert "Demo complete." in out


def test_make_run_given_an_admin_then_make_demo_logs_in_with_it(demo_system, tmp_path, monkeypatch):
    """`ADMIN_USERNAME=… ADMIN_PASSWORD=… make run`, then `make demo` in another terminal with
    neither exported: the demo logs in with var/credentials.env, which must say what the
    running system uses, even though an earlier `make run` had generated another password.
    (The session's services run with ADMIN, as `make run` would with it exported; its ports
    are fixed, so this uses make run's own environment and the demo's own lookup.)"""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "var").mkdir()
    (tmp_path / "var" / "credentials.env").write_text(
        "ADMIN_USERNAME=admin\nADMIN_PASSWORD=generated-by-an-earlier-run\n"
        "SERVICE_USERNAME=order-service\nSERVICE_PASSWORD=generated-by-an-earlier-run\n"
    )
    for name in ("ADMIN_PASSWORD_FILE", "SERVICE_USERNAME", "SERVICE_PASSWORD"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("ADMIN_USERNAME", ADMIN[0])
    monkeypatch.setenv("ADMIN_PASSWORD", ADMIN[1])

    running_with = stack.local_environment()
    assert (running_with["ADMIN_USERNAME"], running_with["ADMIN_PASSWORD"]) == ADMIN

    monkeypatch.delenv("ADMIN_USERNAME")
    monkeypatch.delenv("ADMIN_PASSWORD")
    without_admin = {k: v for k, v in demo_system.items() if not k.startswith("ADMIN_")}
    done = shopctl("demo", "--events-timeout", "30", env=without_admin, timeout_s=180)
    assert done.returncode == 0, f"{done.stdout[-3000:]}\n{done.stderr}"
    assert "Demo complete." in done.stdout
