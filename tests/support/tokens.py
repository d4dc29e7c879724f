"""Keys and hand-made tokens for tests that attack the verifier."""

from __future__ import annotations

import base64
import json
import time
from functools import cache
from typing import Any

import jwt

from user_service.tokens import generate_private_key_pem


@cache
def signing_key_pem() -> str:
    return generate_private_key_pem()


@cache
def other_private_key_pem() -> str:
    return generate_private_key_pem()


def make_token(
    private_key_pem: str,
    *,
    kid: str,
    sub: str = "01a21113-12af-7a1d-9213-90b0e99e75cc",
    role: str = "admin",
    issuer: str = "shop-user-service",
    lifetime_s: int = 300,
    algorithm: str = "RS256",
    **extra: Any,
) -> str:
    now = int(time.time())
    claims = {"sub": sub, "role": role, "iss": issuer, "iat": now, "exp": now + lifetime_s}
    claims.update(extra)
    return jwt.encode(claims, private_key_pem, algorithm=algorithm, headers={"kid": kid})


def unsigned_token(claims: dict[str, Any], kid: str) -> str:
    """An `alg: none` token, which must never be accepted."""

    def b64(data: dict[str, Any]) -> str:
        return base64.urlsafe_b64encode(json.dumps(data).encode()).decode().rstrip("=")

    return f"{b64({'alg': 'none', 'typ': 'JWT', 'kid': kid})}.{b64(claims)}."


TEST_KID = "test-signing-key"


class StaticKeys:
    """A KeySource holding the test signing key, for services that verify without a JWKS fetch."""

    def key_for(self, kid: str) -> Any:
        from cryptography.hazmat.primitives import serialization

        from common.errors import Unauthorized

        if kid != TEST_KID:
            raise Unauthorized("The token was signed with an unknown key.")
        return serialization.load_pem_private_key(
            signing_key_pem().encode(), password=None
        ).public_key()


def role_token(role: str, *, sub: str = "01a21113-12af-7a1d-9213-90b0e99e75cc") -> str:
    """A valid token of `role` signed with the test key under TEST_KID."""
    return make_token(signing_key_pem(), kid=TEST_KID, sub=sub, role=role, lifetime_s=3600)
