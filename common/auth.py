"""Bearer-token verification (RS256 against the user service's JWKS) and role checks."""

from __future__ import annotations

import functools
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol, TypeVar, cast

import jwt
from flask import current_app, g, request

from common.errors import Forbidden, ServiceUnavailable, Unauthorized

CUSTOMER, ADMIN, SERVICE = "customer", "admin", "service"
ROLES = frozenset({CUSTOMER, ADMIN, SERVICE})
ALGORITHM = "RS256"
_CLOCK_SKEW_S = 10

F = TypeVar("F", bound=Callable[..., Any])


@dataclass(frozen=True)
class Principal:
    user_id: str
    role: str

    @property
    def is_admin(self) -> bool:
        return self.role == ADMIN

    @property
    def is_service(self) -> bool:
        return self.role == SERVICE


class KeySource(Protocol):
    def key_for(self, kid: str) -> Any: ...


class JwksKeySource:
    """The user service's public keys, fetched over HTTP and cached; an unknown kid refetches."""

    def __init__(self, jwks_url: str, *, cache_seconds: int, timeout_s: float) -> None:
        self._client = jwt.PyJWKClient(
            jwks_url, cache_keys=True, lifespan=cache_seconds, timeout=int(max(1, timeout_s))
        )

    def key_for(self, kid: str) -> Any:
        try:
            return self._client.get_signing_key(kid).key
        except jwt.PyJWKClientConnectionError as exc:
            raise ServiceUnavailable("Cannot reach the token issuer to verify the token.") from exc
        except jwt.PyJWKClientError as exc:
            raise Unauthorized("The token was signed with an unknown key.") from exc


class TokenVerifier:
    """Verifies each distinct token once and remembers the result until the token expires:
    callers send the same token many times (the order service's service token above all), and
    an RSA check plus PyJWT's parsing is most of what authentication costs."""

    def __init__(
        self,
        key_source: KeySource,
        *,
        issuer: str,
        cache_size: int = 10_000,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._keys = key_source
        self._issuer = issuer
        self._cache_size = cache_size
        self._clock = clock
        self._verified: dict[str, tuple[Principal, float]] = {}

    def verify(self, token: str) -> Principal:
        remembered = self._verified.get(token)
        if remembered is not None and self._clock() < remembered[1]:
            return remembered[0]
        principal, expires_at = self._verify_signature_and_claims(token)
        if len(self._verified) >= self._cache_size:
            self._verified.clear()  # bounded memory; forgetting only costs a re-verification
        self._verified[token] = (principal, expires_at)
        return principal

    def _verify_signature_and_claims(self, token: str) -> tuple[Principal, float]:
        try:
            header = jwt.get_unverified_header(token)
        except jwt.InvalidTokenError as exc:
            raise Unauthorized("The bearer token is malformed.") from exc
        # Checked before any key is looked up: alg=none and HS256-with-the-public-key forgeries
        # never reach the signature check.
        if header.get("alg") != ALGORITHM or not isinstance(header.get("kid"), str):
            raise Unauthorized("The bearer token must be RS256 with a key id.")
        key = self._keys.key_for(header["kid"])
        try:
            claims = jwt.decode(
                token,
                key,
                algorithms=[ALGORITHM],
                issuer=self._issuer,
                leeway=_CLOCK_SKEW_S,
                options={"require": ["exp", "iat", "sub", "iss"], "verify_aud": False},
            )
        except jwt.ExpiredSignatureError as exc:
            raise Unauthorized("The bearer token has expired.") from exc
        except jwt.InvalidTokenError as exc:
            raise Unauthorized("The bearer token is invalid.") from exc
        # Remembered no longer than PyJWT itself would accept it (exp plus the allowed skew).
        return _principal_from(claims), float(claims["exp"]) + _CLOCK_SKEW_S


def _principal_from(claims: dict[str, Any]) -> Principal:
    subject, role = claims.get("sub"), claims.get("role")
    if not isinstance(subject, str) or not subject or role not in ROLES:
        raise Unauthorized("The bearer token lacks a valid subject or role.")
    return Principal(user_id=subject, role=cast(str, role))


def bearer_token() -> str:
    scheme, _, token = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise Unauthorized()
    return token.strip()


def current_principal() -> Principal:
    principal = g.get("principal")
    if principal is None:
        verifier: TokenVerifier = current_app.extensions["token_verifier"]
        principal = verifier.verify(bearer_token())
        g.principal = principal
    return cast(Principal, principal)


def require_own_account(principal: Principal, user_id: str) -> None:
    """A customer acts on their own account only; an admin or a service, where the route lets
    that role in at all, on anyone's."""
    if principal.role == CUSTOMER and principal.user_id != user_id:
        raise Forbidden("Customers may only act on their own account.")


def require_roles(*roles: str) -> Callable[[F], F]:
    """Route decorator: 401 without a valid token, 403 when its role is not among `roles`."""
    allowed = frozenset(roles)

    def decorate(view: F) -> F:
        @functools.wraps(view)
        def guarded(*args: Any, **kwargs: Any) -> Any:
            if current_principal().role not in allowed:
                raise Forbidden("Your role may not perform this operation.")
            return view(*args, **kwargs)

        return cast(F, guarded)

    return decorate


def install_token_verifier(app: Any, verifier: TokenVerifier) -> None:
    app.extensions["token_verifier"] = verifier
