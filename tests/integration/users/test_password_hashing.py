"""Each argon2 hash takes ARGON2_MEMORY_KIB: a process runs a bounded number at once and
answers 503 with Retry-After, after a short wait, when they are all taken."""

from __future__ import annotations

import threading
import time

from tests.integration.users.test_user_api import assert_problem, login, register, unique


def test_login_and_sign_up_are_503_while_every_hashing_turn_is_taken(own_user_app):
    app = own_user_app(argon2_max_concurrent_hashes=1, argon2_hash_wait_s=0.2)
    client = app.test_client()
    username = unique()
    register(client, username)
    passwords = app.extensions["passwords"]
    with passwords.hashing_slot():
        started = time.monotonic()
        busy = login(client, username)
        waited = time.monotonic() - started
        assert_problem(busy, 503)
        assert int(busy.headers["Retry-After"]) >= 1
        assert 0.2 <= waited < 2, "a bounded wait, not a queue without end"
        # More attempts than the lock-out allows (3 in these tests): none of them was checked,
        # so none may count against the account.
        for _ in range(4):
            assert_problem(login(client, username, "wrong-password"), 503)
        newcomer = unique()
        assert_problem(register(client, newcomer), 503)
    assert login(client, username).status_code == 200
    assert register(client, newcomer).status_code == 201, "the refused sign-up left nothing"


def test_service_and_admin_logins_have_turns_of_their_own(own_user_app):
    """A flood of logins for random usernames takes every ordinary turn: the order service
    must still log in (shared/API.md: an attacker can never stop it)."""
    app = own_user_app(argon2_max_concurrent_hashes=1, argon2_hash_wait_s=0.2)
    client = app.test_client()
    service_name, admin_name, customer = unique("svc"), unique("adm"), unique()
    app.extensions["user_service"].ensure_account(service_name, "s3cret-pass", "service")
    app.extensions["user_service"].ensure_account(admin_name, "s3cret-pass", "admin")
    register(client, customer)
    with app.extensions["passwords"].hashing_slot():
        assert login(client, service_name).status_code == 200
        assert login(client, admin_name).status_code == 200
        assert_problem(login(client, customer), 503)
        assert_problem(login(client, unique()), 503)


def test_no_more_hashes_run_at_once_than_the_setting(own_user_app):
    app = own_user_app(argon2_max_concurrent_hashes=2, argon2_hash_wait_s=5)
    passwords = app.extensions["passwords"]
    running, most = 0, 0
    lock = threading.Lock()
    original = passwords._hasher

    class Counting:
        """Wraps the real hasher to watch how many hashes overlap."""

        def hash(self, password: str) -> str:
            nonlocal running, most
            with lock:
                running += 1
                most = max(most, running)
            time.sleep(0.02)
            try:
                return original.hash(password)
            finally:
                with lock:
                    running -= 1

    passwords._hasher = Counting()
    threads = [threading.Thread(target=passwords.hash, args=("pw",)) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert most == 2
