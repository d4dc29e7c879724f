"""The user and product services, as the order service sees them: over HTTP, as its own
`service` account, with every failure turned into the answer our own client should get."""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Any, Protocol

import requests
import structlog

from common.errors import Conflict, ServiceUnavailable, Unprocessable, field_error
from common.http import ServiceClient

log = structlog.get_logger(__name__)
# A token is renewed this long before it expires, so none is sent that expires on the way.
_TOKEN_RENEW_MARGIN_S = 60
_MAX_REMEMBERED_USERS = 100_000


@dataclass(frozen=True)
class ProductPrice:
    product_id: str
    price: Decimal


@dataclass(frozen=True)
class ReservationLine:
    product_id: str
    quantity: int


class ProductCatalog(Protocol):
    def prices(self, product_ids: Sequence[str]) -> dict[str, ProductPrice]:
        """The current price of each product that exists and is not archived."""
        ...

    def reserve(self, reservation_id: str, lines: Sequence[ReservationLine]) -> None:
        """All lines or none; Conflict naming every short item, Unprocessable if one is gone."""
        ...

    def release(self, reservation_id: str) -> None:
        """Idempotent; releasing a reservation that never arrived is allowed."""
        ...


class UserDirectory(Protocol):
    def require_user(self, user_id: str) -> None:
        """Unprocessable when no such user exists."""
        ...


class ServiceToken:
    """The service account's access token: logged in once, reused until shortly before expiry,
    shared by the threads of a process."""

    def __init__(self, users: ServiceClient, username: str | None, password: str | None) -> None:
        self._users = users
        self._credentials = {"username": username or "", "password": password or ""}
        self._lock = threading.Lock()
        self._token = ""
        self._renew_at = 0.0

    def header(self) -> dict[str, str]:
        with self._lock:
            if time.monotonic() >= self._renew_at:
                self._token, lifetime_s = self._login()
                self._renew_at = time.monotonic() + max(0, lifetime_s - _TOKEN_RENEW_MARGIN_S)
        return {"Authorization": f"Bearer {self._token}"}

    def forget(self) -> None:
        """After a 401: the token was revoked or the key rotated; log in again next time."""
        with self._lock:
            self._renew_at = 0.0

    def _login(self) -> tuple[str, int]:
        if not self._credentials["username"]:
            raise ServiceUnavailable("The order service has no service account configured.")
        # Logging in twice is harmless, so a lost answer may be retried.
        answer = self._users.request(
            "POST", "/api/v1/login", json=self._credentials, idempotent=True
        )
        if answer.status_code != 200:
            log.error("service_login_failed", status=answer.status_code)
            raise ServiceUnavailable("The order service cannot log in to the user service.")
        body = answer.json()
        return str(body["accessToken"]), int(body["expiresIn"])


def authorised_request(
    client: ServiceClient, token: ServiceToken, method: str, path: str, **kwargs: Any
) -> requests.Response:
    """One request as the service account; a 401 renews the token and tries once more."""
    answer = client.request(method, path, headers=token.header(), **kwargs)
    if answer.status_code == 401:
        token.forget()
        answer = client.request(method, path, headers=token.header(), **kwargs)
    return answer


class HttpProductCatalog:
    def __init__(self, products: ServiceClient, token: ServiceToken) -> None:
        self._products = products
        self._token = token

    def prices(self, product_ids: Sequence[str]) -> dict[str, ProductPrice]:
        answer = self._products.request(
            "GET", "/api/v1/products", params={"ids": ",".join(product_ids)}
        )
        _raise_unless_ok(answer, self._products.dependency_name)
        return {
            item["id"]: ProductPrice(item["id"], Decimal(item["price"]))
            for item in answer.json()["items"]
        }

    def reserve(self, reservation_id: str, lines: Sequence[ReservationLine]) -> None:
        body = {
            "reservationId": reservation_id,
            "items": [{"productId": line.product_id, "quantity": line.quantity} for line in lines],
        }
        # Idempotent per reservation id, so a lost answer may be retried.
        answer = authorised_request(
            self._products, self._token, "POST", "/api/v1/reservations", json=body, idempotent=True
        )
        if answer.status_code == 409 and "items" in _json(answer):
            raise Conflict(
                "Not enough stock for every item; nothing was reserved.",
                extra={"items": _json(answer)["items"]},
            )
        if answer.status_code == 422:
            # Archived between the price lookup and the reservation.
            raise Unprocessable(
                "Some items name products that do not exist.",
                errors=_json(answer).get("errors") or [],
            )
        _raise_unless_ok(answer, self._products.dependency_name)

    def release(self, reservation_id: str) -> None:
        answer = authorised_request(
            self._products,
            self._token,
            "POST",
            f"/api/v1/reservations/{reservation_id}/release",
            idempotent=True,
        )
        _raise_unless_ok(answer, self._products.dependency_name)


class HttpUserDirectory:
    """Remembers users it has seen for a while: users are never deleted, so a remembered
    "exists" cannot turn wrong, and a typo'd id is asked about every time."""

    def __init__(self, users: ServiceClient, token: ServiceToken, *, cache_s: float) -> None:
        self._users = users
        self._token = token
        self._cache_s = cache_s
        self._known_until: dict[str, float] = {}

    def require_user(self, user_id: str) -> None:
        if self._known_until.get(user_id, 0.0) > time.monotonic():
            return
        answer = authorised_request(self._users, self._token, "GET", f"/api/v1/users/{user_id}")
        if answer.status_code == 404:
            raise Unprocessable("No such user.", errors=[field_error("userId", "no such user")])
        _raise_unless_ok(answer, self._users.dependency_name)
        if len(self._known_until) >= _MAX_REMEMBERED_USERS:
            self._known_until.clear()  # bounded memory; forgetting only costs a lookup
        self._known_until[user_id] = time.monotonic() + self._cache_s


def _json(answer: requests.Response) -> dict[str, Any]:
    try:
        body = answer.json()
    except ValueError:
        return {}
    return body if isinstance(body, dict) else {}


def _raise_unless_ok(answer: requests.Response, dependency: str) -> None:
    """Anything unexpected from a dependency is its outage to our client, never our 500."""
    if answer.status_code < 300:
        return
    log.warning("dependency_refused", dependency=dependency, status=answer.status_code)
    raise ServiceUnavailable(f"The {dependency} could not complete the request.", retry_after_s=2)
