"""The RS256 signing key: issuing access tokens and publishing the public half as a JWKS."""

from __future__ import annotations

import base64
import hashlib
import json
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from jwt.algorithms import RSAAlgorithm

from common.auth import ALGORITHM
from user_service.settings import UserSettings


class TokenSigner:
    def __init__(self, private_key_pem: str, *, issuer: str, ttl_s: int) -> None:
        key = serialization.load_pem_private_key(private_key_pem.encode(), password=None)
        if not isinstance(key, rsa.RSAPrivateKey) or key.key_size < 2048:
            raise ValueError("the JWT signing key must be an RSA key of at least 2048 bits")
        self._private_key = key
        public_jwk = json.loads(RSAAlgorithm.to_jwk(key.public_key()))
        self._public_jwk = {name: public_jwk[name] for name in ("kty", "n", "e")}
        self.kid = _thumbprint(self._public_jwk)
        self.issuer = issuer
        self.ttl_s = ttl_s

    @classmethod
    def from_settings(cls, settings: UserSettings) -> TokenSigner:
        return cls(
            settings.private_key_pem(),
            issuer=settings.jwt_issuer,
            ttl_s=settings.access_token_ttl_s,
        )

    def issue(self, *, subject: str, role: str, now: datetime) -> str:
        claims = {
            "sub": subject,
            "role": role,
            "iss": self.issuer,
            "iat": int(now.timestamp()),
            "exp": int((now + timedelta(seconds=self.ttl_s)).timestamp()),
        }
        return jwt.encode(claims, self._private_key, algorithm=ALGORITHM, headers={"kid": self.kid})

    def public_key(self) -> rsa.RSAPublicKey:
        return self._private_key.public_key()

    def jwks(self) -> dict[str, Any]:
        return {"keys": [{**self._public_jwk, "kid": self.kid, "use": "sig", "alg": ALGORITHM}]}


def _thumbprint(jwk: dict[str, Any]) -> str:
    """RFC 7638: the key id is a hash of the key itself, so it changes exactly when the key does."""
    canonical = json.dumps({k: jwk[k] for k in ("e", "kty", "n")}, separators=(",", ":"))
    digest = hashlib.sha256(canonical.encode()).digest()
    return base64.urlsafe_b64encode(digest).decode().rstrip("=")


def generate_private_key_pem() -> str:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode()


def write_private_key(path: Path) -> bool:
    """Create the key file once (owner-only); an existing key is kept so tokens survive restarts."""
    if path.exists():
        return False
    path.parent.mkdir(parents=True, exist_ok=True)
    path.touch(mode=0o600)
    path.write_text(generate_private_key_pem(), encoding="utf-8")
    return True
