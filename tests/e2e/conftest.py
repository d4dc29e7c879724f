from __future__ import annotations

import sys
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import jwt
import pytest
import requests

from common.migrations import upgrade_to_head
from devstack.sqs import QUEUE_NAME
from tests.support.events import EventCollector
from tests.support.processes import RunningProcess, run_cli, start_process, start_service
from tests.support.sqs import LocalSqs
from tests.support.tokens import signing_key_pem
from user_service.app import MIGRATIONS_DIR as USER_MIGRATIONS

ADMIN = ("e2e-admin", "e2e-admin-password")
SERVICE = ("e2e-service", "e2e-service-password")


@pytest.fixture(scope="session")
def log_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("service-logs")


@pytest.fixture(scope="session")
def user_service_env(databases) -> dict[str, str]:
    url = databases.create("e2e_users")
    upgrade_to_head(url, USER_MIGRATIONS)
    return {
        "USER_DATABASE_URL": url,
        "JWT_PRIVATE_KEY": signing_key_pem(),
        "ADMIN_USERNAME": ADMIN[0],
        "ADMIN_PASSWORD": ADMIN[1],
        "SERVICE_USERNAME": SERVICE[0],
        "SERVICE_PASSWORD": SERVICE[1],
        "ARGON2_TIME_COST": "1",
        # Every customer of the suite signs up from 127.0.0.1.
        "SIGNUP_MAX_PER_ADDRESS": "1000000",
        "ARGON2_MEMORY_KIB": "1024",
        "ARGON2_PARALLELISM": "1",
    }


@pytest.fixture(scope="session")
def user_service(user_service_env, log_dir):
    run_cli("user_service", "prestart", env=user_service_env)
    running = start_service("user_service", user_service_env, log_dir)
    yield running
    running.stop()


@pytest.fixture(scope="session")
def product_service_env(databases, user_service) -> dict[str, str]:
    """The product service verifies tokens with the running user service's JWKS."""
    return {
        "PRODUCT_DATABASE_URL": databases.create("e2e_products"),
        "JWKS_URL": f"{user_service.url}/.well-known/jwks.json",
    }


@pytest.fixture(scope="session")
def product_service(product_service_env, log_dir):
    run_cli("product_service", "prestart", env=product_service_env)
    running = start_service("product_service", product_service_env, log_dir)
    yield running
    running.stop()


@pytest.fixture(scope="session")
def login_token(user_service):
    """The access token of one of the configured accounts, by (username, password)."""

    def token(account: tuple[str, str]) -> str:
        response = requests.post(
            f"{user_service.url}/api/v1/login",
            json={"username": account[0], "password": account[1]},
            timeout=5,
        )
        response.raise_for_status()
        return str(response.json()["accessToken"])

    return token


# --- the order service ------------------------------------------------------------------------


@dataclass(frozen=True)
class Account:
    """A signed-in user: their id (the token's `sub`), role and bearer token."""

    id: str
    role: str
    token: str

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}


def _account(token: str) -> Account:
    claims = jwt.decode(token, options={"verify_signature": False})
    return Account(id=claims["sub"], role=claims["role"], token=token)


@pytest.fixture(scope="session")
def admin(login_token) -> Account:
    return _account(login_token(ADMIN))


@pytest.fixture(scope="session")
def service_account(login_token) -> Account:
    return _account(login_token(SERVICE))


@pytest.fixture(scope="session")
def new_customer(user_service, login_token):
    """Signs up a fresh customer and signs them in."""

    def create() -> Account:
        username = f"c{uuid.uuid4().hex[:16]}"
        password = "customer-password"
        response = requests.post(
            f"{user_service.url}/api/v1/users",
            json={"username": username, "email": f"{username}@example.com", "password": password},
            timeout=10,
        )
        assert response.status_code == 201, response.text
        return _account(login_token((username, password)))

    return create


@pytest.fixture(scope="session")
def customer(new_customer) -> Account:
    return new_customer()


@pytest.fixture(scope="session")
def new_product(product_service, admin):
    """Adds a product to a catalog (the session's product service unless `url` says another)."""

    def create(*, price: str = "10.00", stock: int = 100, url: str | None = None) -> dict[str, Any]:
        response = requests.post(
            f"{url or product_service.url}/api/v1/products",
            json={"name": f"Order e2e {uuid.uuid4().hex[:8]}", "price": price, "stock": stock},
            headers=admin.headers,
            timeout=10,
        )
        assert response.status_code == 201, response.text
        product: dict[str, Any] = response.json()
        return product

    return create


@dataclass
class OrderStack:
    """Builds order services and relays on fresh databases; stops all it started at the end."""

    databases: Any
    log_dir: Path
    user_service: RunningProcess
    local_sqs: LocalSqs
    started: list[RunningProcess] = field(default_factory=list)

    def environment(self, product_service_url: str, **overrides: str) -> dict[str, str]:
        """A fresh, migrated order database and everything ORDER_INTERFACE.md names."""
        env = {
            "ORDER_DATABASE_URL": self.databases.create("e2e_orders"),
            "USER_SERVICE_URL": self.user_service.url,
            "PRODUCT_SERVICE_URL": product_service_url,
            "JWKS_URL": f"{self.user_service.url}/.well-known/jwks.json",
            "SERVICE_USERNAME": SERVICE[0],
            "SERVICE_PASSWORD": SERVICE[1],
            **self.local_sqs.environment(),
            "ORDER_EVENTS_QUEUE": QUEUE_NAME,
            "WORKER_HEARTBEAT_FILE": str(self.log_dir / f"heartbeat-{uuid.uuid4().hex}"),
            "PYTHONUNBUFFERED": "1",
            # The session's shared customer leaves hundreds of orders unpaid across the suite;
            # the cap itself is proven against MySQL in tests/integration/orders.
            "MAX_PENDING_ORDERS": "1000000",
            **overrides,
        }
        run_cli("order_service", "prestart", env=env)
        return env

    def service(self, env: dict[str, str], *, name: str = "order_service") -> RunningProcess:
        running = start_service("order_service", env, self.log_dir, name=name)
        self.started.append(running)
        return running

    def worker(self, env: dict[str, str], *, name: str = "order_worker") -> RunningProcess:
        command = [sys.executable, "-m", "order_service", "worker"]
        running = start_process(name, command, env, self.log_dir)
        self.started.append(running)
        time.sleep(0.5)
        if running.process.poll() is not None:
            raise RuntimeError(f"{name} exited early:\n{running.log_text()[-3000:]}")
        return running

    def stop_all(self) -> None:
        for running in reversed(self.started):
            running.stop()


@pytest.fixture(scope="session")
def order_stack(databases, log_dir, user_service, local_sqs):
    stack = OrderStack(databases, log_dir, user_service, local_sqs)
    yield stack
    stack.stop_all()


@pytest.fixture(scope="session")
def order_service_env(order_stack, product_service) -> dict[str, str]:
    return order_stack.environment(product_service.url)


@pytest.fixture(scope="session")
def order_service(order_stack, order_service_env) -> RunningProcess:
    """The order service over the session's user and product services and LocalStack SQS."""
    return order_stack.service(order_service_env)


@pytest.fixture(scope="session")
def order_worker(order_stack, order_service_env) -> RunningProcess:
    """The outbox relay (and attempt repair) for `order_service`'s database."""
    return order_stack.worker(order_service_env)


@pytest.fixture(scope="session")
def order_events(local_sqs):
    """Every message the queue delivers from now on (stops with the session)."""
    collector = EventCollector(local_sqs.endpoint, local_sqs.queue_url)
    collector.start()
    yield collector
    collector.stop()
