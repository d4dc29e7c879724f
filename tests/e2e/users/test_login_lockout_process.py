"""Against the running gunicorn service: guesses at the service account's password lock out
only the guessing client's address, never the order service's (shared/API.md)."""

from __future__ import annotations

import http.client
import json
from urllib.parse import urlsplit

from tests.e2e.conftest import SERVICE

ATTACKER = "127.0.0.2"  # another loopback address: the kernel routes all of 127/8 locally
ORDER_SERVICE = "127.0.0.1"


def login_from(source: str, base_url: str, username: str, password: str, **headers: str) -> int:
    connection = http.client.HTTPConnection(
        urlsplit(base_url).netloc, timeout=10, source_address=(source, 0)
    )
    try:
        connection.request(
            "POST",
            "/api/v1/login",
            body=json.dumps({"username": username, "password": password}),
            headers={"Content-Type": "application/json", **headers},
        )
        response = connection.getresponse()
        response.read()
        return response.status
    finally:
        connection.close()


def test_guessing_the_service_password_locks_out_only_the_guesser(user_service):
    url, (name, password) = user_service.url, SERVICE
    guesses = [login_from(ATTACKER, url, name, f"guess-{n}") for n in range(8)]
    # By default the third failure starts a 1 s pause (LOGIN_SLOWDOWN_AFTER 3): guesses sent
    # back to back are refused from then on, unchecked.
    assert guesses == [401] * 3 + [429] * 5
    assert login_from(ATTACKER, url, name, password) == 429
    assert login_from(ATTACKER, url, name, password, **{"X-Forwarded-For": ORDER_SERVICE}) == 429
    for _ in range(3):
        assert login_from(ORDER_SERVICE, url, name, password) == 200
