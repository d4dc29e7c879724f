"""The verifier remembers a verified token until it expires, and never longer."""

from __future__ import annotations

import time
from typing import Any

import pytest

from common.auth import TokenVerifier
from common.errors import Unauthorized
from tests.support.tokens import TEST_KID, StaticKeys, make_token, signing_key_pem


class CountingKeys(StaticKeys):
    def __init__(self) -> None:
        self.lookups = 0

    def key_for(self, kid: str) -> Any:
        self.lookups += 1
        return super().key_for(kid)


def test_a_token_is_verified_once_while_it_is_valid():
    keys = CountingKeys()
    verifier = TokenVerifier(keys, issuer="shop-user-service")
    token = make_token(signing_key_pem(), kid=TEST_KID, role="service")

    first, again = verifier.verify(token), verifier.verify(token)

    assert first == again
    assert first.role == "service"
    assert keys.lookups == 1


def test_a_remembered_token_is_checked_again_once_it_has_expired():
    keys = CountingKeys()
    now = [time.time()]
    verifier = TokenVerifier(keys, issuer="shop-user-service", clock=lambda: now[0])
    token = make_token(signing_key_pem(), kid=TEST_KID, lifetime_s=60)
    verifier.verify(token)

    now[0] += 60 + 11  # past exp and the 10 s of allowed clock skew
    verifier.verify(token)  # PyJWT's own clock still accepts it; the point is it was asked

    assert keys.lookups == 2


def test_a_forged_token_is_never_remembered_as_valid():
    verifier = TokenVerifier(CountingKeys(), issuer="shop-user-service")
    token = make_token(signing_key_pem(), kid=TEST_KID)
    header, claims, _signature = token.split(".")
    forged = f"{header}.{claims}.AAAA"
    for _ in range(2):
        with pytest.raises(Unauthorized):
            verifier.verify(forged)
