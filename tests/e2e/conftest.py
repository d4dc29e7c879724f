from __future__ import annotations

import pytest
import requests

from common.migrations import upgrade_to_head
from tests.support.processes import run_cli, start_service
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
