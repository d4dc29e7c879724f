"""Sign-ups are throttled per client address: each costs a hash and a row, so one client
cannot fill the users table (SIGNUP_MAX_PER_ADDRESS in SIGNUP_WINDOW_S, then 429)."""

from __future__ import annotations

import sqlalchemy as sa

from tests.integration.users.test_user_api import assert_problem, unique
from tests.support.parallel import all_at_once
from user_service.repository import users as users_table

SIGN_UP_LIMIT = 3


def sign_up_from(client, address: str, username: str | None = None):
    username = username or unique()
    return client.post(
        "/api/v1/users",
        json={"username": username, "email": f"{username}@example.com", "password": "s3cret-pass"},
        environ_base={"REMOTE_ADDR": address},
    )


def accounts_named(app, username: str) -> int:
    with app.extensions["database"].transaction() as connection:
        return connection.execute(
            sa.select(sa.func.count())
            .select_from(users_table)
            .where(users_table.c.username == username)
        ).scalar_one()


def test_an_address_signs_up_the_limit_and_then_waits_for_the_window(own_user_app):
    app = own_user_app(signup_max_per_address=SIGN_UP_LIMIT, signup_window_s=3600)
    client = app.test_client()
    for _ in range(SIGN_UP_LIMIT):
        assert sign_up_from(client, "203.0.113.9").status_code == 201
    refused_name = unique()
    refused = sign_up_from(client, "203.0.113.9", refused_name)
    assert_problem(refused, 429)
    assert 3590 <= int(refused.headers["Retry-After"]) <= 3600
    assert accounts_named(app, refused_name) == 0, "the refused sign-up made nothing"
    # Another client is not held back, and takes the name the refused one asked for.
    assert sign_up_from(client, "198.51.100.20", refused_name).status_code == 201


def test_an_ipv6_client_is_counted_by_its_64_prefix(own_user_app):
    app = own_user_app(signup_max_per_address=SIGN_UP_LIMIT)
    client = app.test_client()
    for host in range(1, SIGN_UP_LIMIT + 1):
        assert sign_up_from(client, f"2001:db8:0:7::{host}").status_code == 201
    assert_problem(sign_up_from(client, "2001:db8:0:7::ffff"), 429)
    assert sign_up_from(client, "2001:db8:0:8::1").status_code == 201


def test_parallel_sign_ups_get_no_more_than_the_limit(own_user_app):
    app = own_user_app(signup_max_per_address=SIGN_UP_LIMIT, argon2_hash_wait_s=10)
    attempts = 12
    statuses = all_at_once(
        attempts, lambda _: sign_up_from(app.test_client(), "203.0.113.10").status_code
    )
    assert sorted(statuses) == [201] * SIGN_UP_LIMIT + [429] * (attempts - SIGN_UP_LIMIT)


def test_a_sign_up_no_hashing_turn_was_free_for_does_not_count(own_user_app):
    app = own_user_app(
        signup_max_per_address=SIGN_UP_LIMIT, argon2_max_concurrent_hashes=1, argon2_hash_wait_s=0.2
    )
    client = app.test_client()
    with app.extensions["passwords"].hashing_slot():
        for _ in range(SIGN_UP_LIMIT + 1):
            assert_problem(sign_up_from(client, "203.0.113.11"), 503)
    for _ in range(SIGN_UP_LIMIT):
        assert sign_up_from(client, "203.0.113.11").status_code == 201
    assert_problem(sign_up_from(client, "203.0.113.11"), 429)
