"""Bearer-token verification (RS256 against the user service's JWKS) and role checks."""

from __future__ import annotations

import functools
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol, TypeVar, cast

import jwt
import structlog
from flask import current_app, g, request

from common.config import CommonSettings
from common.errors import Forbidden, ServiceUnavailable, Unauthorized
from common.http import ServiceClient

CUSTOMER, ADMIN, SERVICE = "customer", "admin", "service"
ROLES = frozenset({CUSTOMER, ADMIN, SERVICE})
ALGORITHM = "RS256"
_CLOCK_SKEW_S = 10
log = structlog.get_logger(__name__)

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
    """The user service's public keys, fetched over HTTP and kept.

    They are read again every `refresh_s`, and at once for a token whose kid is unknown (a
    rotated key), but never more often than every `min_refetch_s`: neither an outage nor a
    stream of tokens with invented kids makes every request a fetch. While reading again
    fails, the keys last read keep verifying (a warning is logged each time), up to
    `max_stale_s` after they were read: a user-service outage stops no service from verifying
    the tokens it could verify before. One fetch at a time and no lock held during it: the
    other callers go on with the keys they have, or wait for that fetch within its deadline."""

    def __init__(
        self,
        issuer: ServiceClient,
        *,
        refresh_s: float,
        max_stale_s: float,
        min_refetch_s: float,
    ) -> None:
        self._issuer = issuer
        self._refresh_s = refresh_s
        self._max_stale_s = max_stale_s
        self._min_refetch_s = min_refetch_s
        self._lock = threading.Lock()
        self._keys: dict[str, Any] = {}
        self._fetched_at: float | None = None
        self._next_fetch_at = 0.0
        self._last_fetch_failed = False
        # Set while a fetch is under way; it is set (done) when the fetch ends either way.
        self._fetch_done: threading.Event | None = None

    @classmethod
    def from_settings(cls, settings: CommonSettings) -> JwksKeySource:
        issuer = ServiceClient(
            settings.jwks_url,
            dependency_name="token issuer",
            connect_timeout_s=settings.http_connect_timeout_s,
            read_timeout_s=settings.http_read_timeout_s,
            retries=0,  # the next fetch is the retry
        )
        return cls(
            issuer,
            refresh_s=settings.jwks_cache_seconds,
            max_stale_s=settings.jwks_max_stale_s,
            min_refetch_s=settings.jwks_min_refetch_s,
        )

    def key_for(self, kid: str) -> Any:
        with self._lock:
            now = time.monotonic()
            known = kid in self._keys
            due = not known or self._fetched_at is None or now - self._fetched_at >= self._refresh_s
            underway = self._fetch_done
            fetches = due and underway is None and now >= self._next_fetch_at
            if fetches:
                self._fetch_done = threading.Event()
                self._next_fetch_at = now + self._min_refetch_s
        if fetches:
            self._fetch()
        elif underway is not None and not known:
            underway.wait(self._issuer.total_timeout_s)
        return self._usable_key(kid)

    def _fetch(self) -> None:
        try:
            keys = self._read_jwks()
        except Exception as exc:  # unreachable, refusing, or answering nonsense: all alike
            with self._lock:
                self._last_fetch_failed = True
                age = None if self._fetched_at is None else time.monotonic() - self._fetched_at
            log.warning("jwks_fetch_failed", error=str(exc), serving_keys_read_s_ago=age)
        else:
            with self._lock:
                recovered = self._last_fetch_failed
                self._keys, self._fetched_at = keys, time.monotonic()
                self._last_fetch_failed = False
            if recovered:
                log.info("jwks_fetched_again", keys=len(keys))
        finally:
            with self._lock:
                finished, self._fetch_done = self._fetch_done, None
            cast(threading.Event, finished).set()

    def _read_jwks(self) -> dict[str, Any]:
        answer = self._issuer.request("GET", "")
        if answer.status_code != 200:
            raise ServiceUnavailable(f"The JWKS answered {answer.status_code}.")
        published = jwt.PyJWKSet.from_dict(answer.json()).keys
        return {
            jwk.key_id: jwk.key
            for jwk in published
            if jwk.key_id and jwk.public_key_use in ("sig", None)  # signing keys only
        }

    def _usable_key(self, kid: str) -> Any:
        with self._lock:
            key = self._keys.get(kid)
            age = None if self._fetched_at is None else time.monotonic() - self._fetched_at
            failed = self._last_fetch_failed
        if age is None or age > self._max_stale_s:
            raise ServiceUnavailable("Cannot reach the token issuer to verify the token.")
        if key is None:
            if failed:  # perhaps a key rotated in since, which cannot be asked about now
                raise ServiceUnavailable("Cannot reach the token issuer to verify the token.")
            raise Unauthorized("The token was signed with an unknown key.")
        return key


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
