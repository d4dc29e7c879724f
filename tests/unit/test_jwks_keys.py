"""Token verification against a real JWKS endpoint (an HTTP server publishing what the user
service publishes) that goes down, refuses, and rotates keys: the last good keys keep
verifying for a bounded time, and neither an outage nor invented key ids make every request
a fetch."""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import UTC, datetime
from http.server import ThreadingHTTPServer
from typing import Any

import pytest

from common.auth import JwksKeySource, TokenVerifier
from common.config import CommonSettings
from common.errors import ServiceUnavailable, Unauthorized
from common.ids import new_id
from tests.support.http_servers import JsonHandler, serve, stop
from tests.support.tokens import other_private_key_pem, signing_key_pem
from user_service.tokens import TokenSigner

ISSUER = "shop-user-service"
REFRESH_S, MAX_STALE_S, MIN_REFETCH_S = 1, 4.0, 0.5


class JwksEndpoint:
    """`/.well-known/jwks.json` on a port of its own, which can go down and come back."""

    def __init__(self, jwks: dict[str, Any]) -> None:
        self.jwks = jwks
        self.requests = 0
        self.refusing = False
        self._server: ThreadingHTTPServer | None = None
        self.port = 0
        self.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/.well-known/jwks.json"

    def start(self) -> None:
        endpoint = self

        class Handler(JsonHandler):
            def do_GET(self) -> None:  # noqa: N802 - http.server's naming
                endpoint.requests += 1
                self.send_json(503 if endpoint.refusing else 200, endpoint.jwks)

        self._server = serve(Handler, self.port)
        self.port = self._server.server_address[1]

    def stop(self) -> None:
        assert self._server is not None
        stop(self._server)
        self._server = None


@pytest.fixture
def signer() -> TokenSigner:
    return TokenSigner(signing_key_pem(), issuer=ISSUER, ttl_s=600)


@pytest.fixture
def endpoint(signer) -> Iterator[JwksEndpoint]:
    endpoint = JwksEndpoint(signer.jwks())
    yield endpoint
    if endpoint._server is not None:
        endpoint.stop()


@pytest.fixture
def verifier(endpoint) -> TokenVerifier:
    settings = CommonSettings(
        jwks_url=endpoint.url,
        jwks_cache_seconds=REFRESH_S,
        jwks_max_stale_s=MAX_STALE_S,
        jwks_min_refetch_s=MIN_REFETCH_S,
        http_read_timeout_s=1,
    )
    return TokenVerifier(JwksKeySource.from_settings(settings), issuer=ISSUER)


def fresh_token(signer: TokenSigner) -> str:
    """A token the verifier has not seen, so its key is looked up."""
    return signer.issue(subject=new_id(), role="customer", now=datetime.now(UTC))


def test_the_last_good_keys_verify_through_an_outage_for_a_bounded_time(signer, endpoint, verifier):
    read_at = time.monotonic()
    assert verifier.verify(fresh_token(signer)).role == "customer"

    endpoint.stop()
    time.sleep(REFRESH_S + 0.2)  # the keys are due to be read again, and the issuer is down
    assert verifier.verify(fresh_token(signer)).role == "customer"

    time.sleep(max(0.0, read_at + MAX_STALE_S + 0.2 - time.monotonic()))
    with pytest.raises(ServiceUnavailable):  # too stale to trust any longer
        verifier.verify(fresh_token(signer))

    endpoint.start()
    time.sleep(MIN_REFETCH_S + 0.1)
    assert verifier.verify(fresh_token(signer)).role == "customer"  # read again, trusted again


def test_keys_are_read_again_when_due_and_a_refusing_issuer_only_once_per_interval(
    signer, endpoint, verifier
):
    verifier.verify(fresh_token(signer))
    endpoint.refusing = True
    time.sleep(REFRESH_S + 0.1)
    for _ in range(20):
        assert verifier.verify(fresh_token(signer)).role == "customer"
    assert endpoint.requests == 2  # the first read, and one attempt for the twenty requests


def test_unknown_key_ids_refetch_at_most_once_per_interval_and_a_rotated_key_is_found(
    signer, endpoint, verifier
):
    verifier.verify(fresh_token(signer))
    rotated = TokenSigner(other_private_key_pem(), issuer=ISSUER, ttl_s=600)
    time.sleep(MIN_REFETCH_S + 0.1)
    for _ in range(20):
        with pytest.raises(Unauthorized):
            verifier.verify(fresh_token(rotated))
    assert endpoint.requests == 2  # one fetch for the first unknown kid, not one per token

    endpoint.jwks = {"keys": signer.jwks()["keys"] + rotated.jwks()["keys"]}
    time.sleep(MIN_REFETCH_S + 0.1)
    assert verifier.verify(fresh_token(rotated)).role == "customer"
    assert verifier.verify(fresh_token(signer)).role == "customer"
    assert endpoint.requests == 3


def test_a_key_the_issuer_no_longer_publishes_stops_verifying_once_the_keys_are_read_again(
    signer, endpoint, verifier
):
    verifier.verify(fresh_token(signer))
    replacement = TokenSigner(other_private_key_pem(), issuer=ISSUER, ttl_s=600)
    endpoint.jwks = replacement.jwks()  # the old key revoked
    time.sleep(REFRESH_S + 0.1)
    assert verifier.verify(fresh_token(replacement)).role == "customer"
    with pytest.raises(Unauthorized):
        verifier.verify(fresh_token(signer))
