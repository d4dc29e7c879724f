"""The order service's service-account token against a real local login endpoint: a slow or
silent user service costs waiting callers one login's deadline, never one login each in turn,
and a token being renewed is still used meanwhile."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import pytest

from common.errors import ServiceUnavailable
from common.http import ServiceClient
from order_service.clients import ServiceToken
from tests.support.http_servers import JsonHandler, serve, stop

LOGIN_DEADLINE_S = 1.0


class LoginEndpoint(JsonHandler):
    """Answers each login with a new token after `delay_s` (waiting for `released` first
    when `hang` is set), or with 503 while `refusing`."""

    logins = 0
    refusing = False
    delay_s = 0.0
    lifetime_s = 900
    hang = threading.Event()
    released = threading.Event()

    def do_POST(self) -> None:  # noqa: N802 - http.server's naming
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        cls = type(self)
        cls.logins += 1
        token = f"token-{cls.logins}"
        if cls.hang.is_set():
            cls.released.wait(30)
        time.sleep(cls.delay_s)
        status = 503 if cls.refusing else 200
        self.send_json(status, {"accessToken": token, "expiresIn": cls.lifetime_s})


@pytest.fixture
def login_endpoint() -> Iterator[str]:
    LoginEndpoint.logins, LoginEndpoint.delay_s, LoginEndpoint.lifetime_s = 0, 0.0, 900
    LoginEndpoint.refusing = False
    LoginEndpoint.hang, LoginEndpoint.released = threading.Event(), threading.Event()
    server = serve(LoginEndpoint)
    yield f"http://127.0.0.1:{server.server_address[1]}"
    LoginEndpoint.released.set()
    stop(server)


def token_for(url: str) -> ServiceToken:
    users = ServiceClient(
        url,
        dependency_name="user service",
        connect_timeout_s=1,
        read_timeout_s=LOGIN_DEADLINE_S,
        total_timeout_s=LOGIN_DEADLINE_S,
        retries=0,
    )
    return ServiceToken(users, "order-service", "a-password")


def test_callers_waiting_for_a_silent_login_all_fail_within_one_logins_deadline(login_endpoint):
    LoginEndpoint.hang.set()
    token = token_for(login_endpoint)
    started = time.monotonic()
    with ThreadPoolExecutor(max_workers=4) as pool:
        calls = [pool.submit(token.header) for _ in range(4)]
        for call in calls:
            with pytest.raises(ServiceUnavailable):
                call.result(10)
    assert time.monotonic() - started < LOGIN_DEADLINE_S * 2.5  # one deadline, not four
    assert LoginEndpoint.logins == 1  # the silent user service was asked once, not four times

    LoginEndpoint.hang.clear()
    time.sleep(1.1)  # past the pause after a failed login
    assert token.header() == {"Authorization": "Bearer token-2"}  # the next caller logs in


def test_a_token_being_renewed_is_still_sent_meanwhile(login_endpoint):
    LoginEndpoint.lifetime_s = 61  # renewed one second from now, good for fifty more
    token = token_for(login_endpoint)
    assert token.header() == {"Authorization": "Bearer token-1"}
    time.sleep(1.1)

    LoginEndpoint.delay_s = 0.9  # within the login deadline
    with ThreadPoolExecutor(max_workers=1) as pool:
        renewing = pool.submit(token.header)
        while LoginEndpoint.logins < 2:
            time.sleep(0.01)
        started = time.monotonic()
        assert token.header() == {"Authorization": "Bearer token-1"}
        assert time.monotonic() - started < 0.6  # did not wait for the renewal
        assert renewing.result(10) == {"Authorization": "Bearer token-2"}
    assert token.header() == {"Authorization": "Bearer token-2"}


def test_a_failed_login_is_not_tried_again_by_every_caller(login_endpoint):
    LoginEndpoint.refusing = True
    token = token_for(login_endpoint)
    for _ in range(10):
        with pytest.raises(ServiceUnavailable):
            token.header()
    assert LoginEndpoint.logins == 1

    LoginEndpoint.refusing = False
    time.sleep(1.1)
    assert token.header() == {"Authorization": "Bearer token-2"}


def test_a_renewal_that_fails_keeps_the_token_that_is_still_good(login_endpoint):
    LoginEndpoint.lifetime_s = 61  # renewed one second from now, good for fifty more
    token = token_for(login_endpoint)
    assert token.header() == {"Authorization": "Bearer token-1"}
    time.sleep(1.1)
    LoginEndpoint.refusing = True
    for _ in range(5):
        assert token.header() == {"Authorization": "Bearer token-1"}
    assert LoginEndpoint.logins == 2  # one renewal tried, not five
