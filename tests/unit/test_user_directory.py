"""The order service's user-service adapter (HttpUserDirectory) against a real local HTTP
server that answers as the user service does: reading an order's shipping address and a
user's profile, and every failure turned into the answer our own client gets."""

from __future__ import annotations

import re
import socket
from collections.abc import Iterator

import pytest

from common.errors import ServiceUnavailable, Unprocessable
from common.http import ServiceClient
from order_service.clients import HttpUserDirectory, ServiceToken, UserProfile
from tests.support.http_servers import JsonHandler, serving

USER = "0190f0a0-0000-7000-8000-0000000000a1"
ADDRESS = "0190f0a0-0000-7000-8000-00000000ad01"
ADDRESS_JSON = {
    "id": ADDRESS,
    "label": None,
    "recipient": "Grace Hopper",
    "line1": "1 Navy Way",
    "line2": "Apt 2",
    "city": "Arlington",
    "region": "VA",
    "postalCode": "22202",
    "country": "US",
    "phone": None,
    "createdAt": "2026-12-01T10:00:00Z",
    "updatedAt": "2026-12-02T10:00:00Z",
}
USER_JSON = {
    "id": USER,
    "username": "grace",
    "email": "grace@example.com",
    "phone": None,
    "role": "customer",
    "createdAt": "2026-12-01T10:00:00Z",
    "updatedAt": "2026-12-01T10:00:00Z",
}


class UserService(JsonHandler):
    """Logs the service account in; answers each path from `answers` (status, body), 404 for
    any other; records each request's path and Authorization header."""

    answers: dict[str, tuple[int, object]] = {}
    seen: list[tuple[str, str | None]] = []

    def do_POST(self) -> None:  # noqa: N802 - http.server's name
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        self.send_json(
            200, {"accessToken": "service-token", "tokenType": "Bearer", "expiresIn": 900}
        )

    def do_GET(self) -> None:  # noqa: N802 - http.server's name
        type(self).seen.append((self.path, self.headers.get("Authorization")))
        status, body = type(self).answers.get(self.path, (404, {"status": 404}))
        self.send_json(status, body)


@pytest.fixture
def user_service() -> Iterator[type[UserService]]:
    UserService.answers, UserService.seen = {}, []
    with serving(UserService) as url:
        UserService.url = url  # type: ignore[attr-defined]
        yield UserService


def directory_at(url: str) -> HttpUserDirectory:
    client = ServiceClient(
        url, dependency_name="user service", connect_timeout_s=1, read_timeout_s=2, retries=0
    )
    return HttpUserDirectory(client, ServiceToken(client, "order-service", "secret"), cache_s=60)


ADDRESS_PATH = f"/api/v1/users/{USER}/addresses/{ADDRESS}"


def test_an_address_is_read_in_one_call_as_the_service_and_copied(user_service):
    user_service.answers[ADDRESS_PATH] = (200, ADDRESS_JSON)
    users = directory_at(user_service.url)

    address = users.address_of(USER, ADDRESS)

    assert address.as_json() == {
        k: v for k, v in ADDRESS_JSON.items() if k not in ("id", "createdAt", "updatedAt")
    }
    assert user_service.seen == [(ADDRESS_PATH, "Bearer service-token")]
    users.require_user(USER)  # the address proved the user exists: no second call
    assert len(user_service.seen) == 1


def test_an_address_the_user_service_does_not_know_for_that_user_is_422(user_service):
    with pytest.raises(Unprocessable) as refused:
        directory_at(user_service.url).address_of(USER, ADDRESS)
    assert refused.value.errors == [
        {"field": "shippingAddressId", "message": "no such address of this user"}
    ]


@pytest.mark.parametrize(
    "answer",
    [
        (500, {}),
        (403, {"status": 403}),
        (200, {**ADDRESS_JSON, "recipient": None}),
        (200, {**ADDRESS_JSON, "city": 7}),
        (200, {**ADDRESS_JSON, "line2": "x" * 5000}),
        (200, ["not", "an", "address"]),
    ],
    ids=["500", "403", "no recipient", "city a number", "huge line", "a list"],
)
def test_any_other_address_answer_is_the_user_services_failure(user_service, answer):
    user_service.answers[ADDRESS_PATH] = answer
    with pytest.raises(ServiceUnavailable) as unavailable:
        directory_at(user_service.url).address_of(USER, ADDRESS)
    assert "Retry-After" in unavailable.value.headers


def test_a_profile_is_the_user_as_the_user_service_has_them(user_service):
    user_service.answers[f"/api/v1/users/{USER}"] = (200, USER_JSON)
    profile = directory_at(user_service.url).profile_of(USER)
    assert profile == UserProfile(USER, "grace", "grace@example.com")


def test_a_user_the_user_service_does_not_know_is_closed(user_service):
    assert directory_at(user_service.url).profile_of(USER) is None


@pytest.mark.parametrize(
    "answer",
    [(503, {}), (200, {**USER_JSON, "id": ADDRESS}), (200, {**USER_JSON, "email": None})],
    ids=["503", "another user", "no email"],
)
def test_any_other_profile_answer_is_the_user_services_failure(user_service, answer):
    user_service.answers[f"/api/v1/users/{USER}"] = answer
    with pytest.raises(ServiceUnavailable):
        directory_at(user_service.url).profile_of(USER)


def test_an_unreachable_user_service_is_503_with_retry_after():
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        closed_port = probe.getsockname()[1]
    users = directory_at(f"http://127.0.0.1:{closed_port}")
    for call in (lambda: users.profile_of(USER), lambda: users.address_of(USER, ADDRESS)):
        with pytest.raises(ServiceUnavailable) as unavailable:
            call()
        assert re.fullmatch(r"\d+", unavailable.value.headers["Retry-After"])
