"""The service-to-service HTTP client against a real local HTTP server (no mocks): what is
retried, what is not, and how failures reach our own caller."""

from __future__ import annotations

import json
import socket
import time
from collections.abc import Iterator

import pytest

from common.errors import ServiceUnavailable
from common.http import ServiceClient
from tests.support.blackhole import black_hole_proxy
from tests.support.http_servers import JsonHandler, serve, stop


class Downstream(JsonHandler):
    """Answers 503 to the first `failures` requests, then 200 echoing what it received."""

    failures = 0
    seen: list[dict[str, object]] = []

    def _answer(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        received = {
            "method": self.command,
            "path": self.path,
            "body": json.loads(self.rfile.read(length)) if length else None,
            "contentType": self.headers.get("Content-Type"),
            "authorization": self.headers.get("Authorization"),
        }
        type(self).seen.append(received)
        self.send_json(503 if len(type(self).seen) <= type(self).failures else 200, received)

    do_GET = do_POST = _answer  # noqa: N815 - http.server's naming


@pytest.fixture
def downstream() -> Iterator[type[Downstream]]:
    Downstream.failures, Downstream.seen = 0, []
    server = serve(Downstream)
    Downstream.url = f"http://127.0.0.1:{server.server_address[1]}"  # type: ignore[attr-defined]
    yield Downstream
    stop(server)


def client_for(url: str) -> ServiceClient:
    return ServiceClient(
        url, dependency_name="test service", connect_timeout_s=1, read_timeout_s=2, retries=2
    )


def test_a_json_body_and_headers_arrive_and_the_answer_is_read(downstream):
    answer = client_for(downstream.url).request(
        "POST", "/things", json={"a": 1}, headers={"Authorization": "Bearer t"}
    )
    assert answer.status_code == 200
    assert answer.json() == {
        "method": "POST",
        "path": "/things",
        "body": {"a": 1},
        "contentType": "application/json",
        "authorization": "Bearer t",
    }


def test_a_base_url_path_is_kept_as_a_prefix(downstream):
    answer = client_for(downstream.url + "/gateway/").request("GET", "/things")
    assert answer.json()["path"] == "/gateway/things"


def test_an_idempotent_post_is_retried_through_a_503(downstream):
    downstream.failures = 2
    answer = client_for(downstream.url).request("POST", "/r", json={}, idempotent=True)
    assert answer.status_code == 200
    assert len(downstream.seen) == 3


def test_a_get_is_retried_but_only_as_often_as_allowed(downstream):
    downstream.failures = 5
    answer = client_for(downstream.url).request("GET", "/r")
    assert answer.status_code == 503
    assert len(downstream.seen) == 3


def test_a_plain_post_is_sent_once(downstream):
    downstream.failures = 1
    answer = client_for(downstream.url).request("POST", "/r", json={})
    assert answer.status_code == 503
    assert len(downstream.seen) == 1


def test_nobody_listening_is_a_503_for_our_caller():
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    with pytest.raises(ServiceUnavailable) as raised:
        client_for(f"http://127.0.0.1:{port}").request("GET", "/r")
    assert raised.value.status == 503


def test_a_dependency_that_went_silent_is_a_503_within_the_total_deadline(downstream):
    """Six attempts of a second each would take six; the call's deadline ends it at two."""
    with black_hole_proxy("127.0.0.1", int(downstream.url.rsplit(":", 1)[1])) as proxy:
        silent = ServiceClient(
            f"http://127.0.0.1:{proxy.port}",
            dependency_name="test service",
            connect_timeout_s=1,
            read_timeout_s=1,
            total_timeout_s=2,
            retries=5,
        )
        assert silent.request("GET", "/r").status_code == 200
        proxy.swallow()
        started = time.monotonic()
        with pytest.raises(ServiceUnavailable):
            silent.request("GET", "/r")
        assert 1.5 <= time.monotonic() - started < 4.0
