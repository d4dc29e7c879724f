from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest
from flask import Flask
from flask.testing import FlaskClient

from common.migrations import upgrade_to_head
from tests.support.tokens import signing_key_pem
from user_service.app import MIGRATIONS_DIR, create_app
from user_service.settings import UserSettings

# Cheap argon2 parameters keep the suite fast; production uses the library's defaults.
FAST_ARGON2 = {"argon2_time_cost": 1, "argon2_memory_kib": 1024, "argon2_parallelism": 1}


# One hashing turn, given up on quickly, and a minute's pause after the first failed login: an
# attempt turned away for want of a turn (503) shows whether it was counted.
ONE_TURN_AND_A_PAUSE_AFTER_ONE_FAILURE: dict[str, object] = {
    "login_slowdown_after": 1,
    "login_slowdown_first_pause_s": 60,
    "argon2_max_concurrent_hashes": 1,
    "argon2_hash_wait_s": 0.2,
}


def user_settings(database_url: str, **overrides: object) -> UserSettings:
    values: dict[str, object] = {
        "database_url": database_url,
        "jwt_private_key": signing_key_pem(),
        "login_max_failures": 3,
        "login_failure_window_s": 60,
        # The suite signs hundreds of users up from the test client's one address; the
        # sign-up throttle is tested with its own limit (test_sign_up_throttle.py).
        "signup_max_per_address": 1_000_000,
        **FAST_ARGON2,
        **overrides,
    }
    return UserSettings.model_validate(values)


@pytest.fixture(scope="session")
def user_db_url(databases) -> str:
    url = databases.create("users")
    upgrade_to_head(url, MIGRATIONS_DIR)
    return url


@pytest.fixture(scope="session")
def make_user_app(user_db_url: str) -> Callable[..., Flask]:
    def make(**overrides: object) -> Flask:
        database_url = str(overrides.pop("database_url", user_db_url))
        return create_app(user_settings(database_url, **overrides))

    return make


@pytest.fixture(scope="session")
def user_app(make_user_app) -> Flask:
    return make_user_app()


@pytest.fixture
def client(user_app: Flask) -> FlaskClient:
    return user_app.test_client()


@pytest.fixture
def own_user_app(make_user_app) -> Iterator[Callable[..., Flask]]:
    """make_user_app, whose apps' pooled connections close when the test ends (the MySQL
    server is shared by every test process, and its connections are finite)."""
    made: list[Flask] = []

    def make(**overrides: object) -> Flask:
        made.append(make_user_app(**overrides))
        return made[-1]

    yield make
    for app in made:
        app.extensions["database"].dispose()
