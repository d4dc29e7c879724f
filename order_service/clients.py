"""The user and product services, as the order service sees them: over HTTP, as its own
`service` account, with every failure turned into the answer our own client should get."""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Any, Protocol, cast

import structlog

from common.batching import Coalescer
from common.errors import Conflict, ServiceUnavailable, Unprocessable, field_error
from common.http import Answer, ServiceClient, request_id_being_served
from order_service.orders_repository import ShippingAddress

log = structlog.get_logger(__name__)
# A token is renewed this long before it expires; while it is renewed, the old one is still
# sent until this close to its expiry, so none is sent that expires on the way.
_TOKEN_RENEW_MARGIN_S, _TOKEN_USABLE_MARGIN_S = 60, 10
# After a failed login, the next waits this long: an outage of the user service (or a locked
# service account) is not asked again by every order.
_LOGIN_RETRY_PAUSE_S = 1.0
_CANNOT_LOG_IN = "The order service cannot log in to the user service."
# A queued reservation waits for the batch in flight, then for its own: each one call to the
# product service within its deadline.
_BATCHES_WAITED_FOR = 2
_MAX_REMEMBERED_USERS = 100_000
UNKNOWN_PRODUCTS = "Some items name products that do not exist."
# The product service's bounds on one batch of reservations.
MAX_BATCH_RESERVATIONS, MAX_BATCH_ITEMS = 64, 100
# ... and on one batch of releases.
MAX_BATCH_RELEASES = 200
# order_items.name's width, the product service's own bound on a name.
MAX_PRODUCT_NAME_CHARS = 200


@dataclass(frozen=True)
class ReservationLine:
    product_id: str
    quantity: int


@dataclass(frozen=True)
class HeldItem:
    """A reserved product's price and name, read under the same lock as its stock was taken."""

    price: Decimal
    name: str


@dataclass(frozen=True)
class UserProfile:
    id: str
    username: str
    email: str


class ProductCatalog(Protocol):
    def reserve(self, reservation_id: str, lines: Sequence[ReservationLine]) -> dict[str, HeldItem]:
        """All lines or none; Conflict naming every short item, Unprocessable if one is gone.
        Returns each product's price and name as held."""
        ...

    def release(self, reservation_id: str) -> None:
        """Idempotent; releasing a reservation that never arrived is allowed."""
        ...

    def release_each(self, reservation_ids: Sequence[str]) -> None:
        """`release` for each, at most MAX_BATCH_RELEASES, in one call: all or none answered."""
        ...


class UserDirectory(Protocol):
    def require_user(self, user_id: str) -> None:
        """Unprocessable when no such user exists."""
        ...

    def address_of(self, user_id: str, address_id: str) -> ShippingAddress:
        """The user's address, in one call that proves the user exists too. Unprocessable
        naming `shippingAddressId` when the user or the address does not exist, or the address
        is another user's."""
        ...

    def profile_of(self, user_id: str) -> UserProfile | None:
        """The user as the user service has them now; None when it knows no such user (the
        account was closed)."""
        ...


class ServiceToken:
    """The service account's access token: logged in once, reused until shortly before expiry,
    shared by the threads of a process.

    One login at a time, and no lock held while it runs: while one caller renews the token,
    the others go on with the current one if it has not expired, or else wait for that login
    (within its own deadline) instead of each logging in after the other: a slow or silent
    user service costs every waiting request one login's deadline, not one each in turn. A
    failed login is not tried again for a moment, so an outage is not asked by every order."""

    def __init__(self, users: ServiceClient, username: str | None, password: str | None) -> None:
        self._users = users
        self._credentials = {"username": username or "", "password": password or ""}
        self._lock = threading.Lock()
        self._token = ""
        self._renew_at = 0.0
        self._expires_at = 0.0
        self._next_login_at = 0.0
        # Set while a login is under way; it is set (done) when the login ends either way.
        self._login_done: threading.Event | None = None

    def header(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self._current()}"}

    def forget(self) -> None:
        """After a 401: the token was revoked or the key rotated; log in again next time."""
        with self._lock:
            self._renew_at = self._expires_at = 0.0

    def _current(self) -> str:
        with self._lock:
            now = time.monotonic()
            underway = self._login_done
            renewing = underway is not None or now < self._next_login_at
            if now < self._renew_at or (renewing and now < self._expires_at):
                # Fresh; or being renewed (or renewed in vain a moment ago) and still good.
                return self._token
            if underway is None:
                if now < self._next_login_at:
                    raise ServiceUnavailable(_CANNOT_LOG_IN)  # a login failed a moment ago
                self._login_done = threading.Event()
        if underway is None:
            return self._log_in()
        return self._after_login(underway)

    def _log_in(self) -> str:
        try:
            token, lifetime_s = self._login()
        except ServiceUnavailable:
            with self._lock:
                now = time.monotonic()
                self._next_login_at = now + _LOGIN_RETRY_PAUSE_S
                if now < self._expires_at:
                    return self._token
            raise
        else:
            with self._lock:
                now = time.monotonic()
                self._token = token
                self._renew_at = now + max(0, lifetime_s - _TOKEN_RENEW_MARGIN_S)
                self._expires_at = now + max(0, lifetime_s - _TOKEN_USABLE_MARGIN_S)
            return token
        finally:
            with self._lock:
                finished, self._login_done = self._login_done, None
            cast(threading.Event, finished).set()

    def _after_login(self, login_done: threading.Event) -> str:
        """Another caller's login, waited for within that login's own deadline."""
        if login_done.wait(self._users.total_timeout_s):
            with self._lock:
                if time.monotonic() < self._expires_at:
                    return self._token
        raise ServiceUnavailable(_CANNOT_LOG_IN)

    def _login(self) -> tuple[str, int]:
        if not self._credentials["username"]:
            raise ServiceUnavailable("The order service has no service account configured.")
        # Logging in twice is harmless, so a lost answer may be retried.
        answer = self._users.request(
            "POST", "/api/v1/login", json=self._credentials, idempotent=True
        )
        body = _json(answer)
        token, lifetime_s = body.get("accessToken"), body.get("expiresIn")
        if answer.status_code != 200 or not isinstance(token, str) or type(lifetime_s) is not int:
            log.error("service_login_failed", status=answer.status_code)
            raise ServiceUnavailable(_CANNOT_LOG_IN)
        return token, lifetime_s


def authorised_request(
    client: ServiceClient, token: ServiceToken, method: str, path: str, **kwargs: Any
) -> Answer:
    """One request as the service account; a 401 renews the token and tries once more."""
    answer = client.request(method, path, headers=token.header(), **kwargs)
    if answer.status_code == 401:
        token.forget()
        answer = client.request(method, path, headers=token.header(), **kwargs)
    return answer


@dataclass(frozen=True)
class _Reservation:
    reservation_id: str
    lines: Sequence[ReservationLine]
    # The order request it is for: a batch travels under one request id, so it names the rest.
    request_id: str | None


class HttpProductCatalog:
    def __init__(self, products: ServiceClient, token: ServiceToken) -> None:
        self._products = products
        self._token = token
        # Concurrent orders' reservations travel together, as many items as one may hold.
        self._reservations: Coalescer[_Reservation, dict[str, HeldItem]] = Coalescer(
            "reservations",
            self._reserve_batch,
            max_calls=MAX_BATCH_RESERVATIONS,
            max_size=MAX_BATCH_ITEMS,
            size_of=lambda reservation: len(reservation.lines),
            wait_timeout_s=_BATCHES_WAITED_FOR * products.total_timeout_s,
        )

    def reserve(self, reservation_id: str, lines: Sequence[ReservationLine]) -> dict[str, HeldItem]:
        return self._reservations.call(
            _Reservation(reservation_id, lines, request_id_being_served())
        )

    def _reserve_batch(self, batch: list[_Reservation]) -> list[dict[str, HeldItem] | Exception]:
        body = {
            "reservations": [
                {
                    "reservationId": reservation.reservation_id,
                    "items": [
                        {"productId": line.product_id, "quantity": line.quantity}
                        for line in reservation.lines
                    ],
                }
                for reservation in batch
            ]
        }
        if len(batch) > 1:
            log.info(
                "reservations_sent_together",
                request_ids=[reservation.request_id for reservation in batch],
            )
        # Idempotent per reservation id, so a lost answer may be retried.
        answer = authorised_request(
            self._products,
            self._token,
            "POST",
            "/api/v1/reservations/batch",
            json=body,
            idempotent=True,
        )
        _raise_unless_ok(answer, self._products.dependency_name)
        results = _json(answer).get("results")
        if not isinstance(results, list) or len(results) != len(batch):
            log.error("reservation_batch_malformed", dependency=self._products.dependency_name)
            raise ServiceUnavailable(f"The {self._products.dependency_name} answered no results.")
        return [
            _reservation_outcome(result, reservation.lines, self._products.dependency_name)
            for result, reservation in zip(results, batch, strict=True)
        ]

    def release(self, reservation_id: str) -> None:
        answer = authorised_request(
            self._products,
            self._token,
            "POST",
            f"/api/v1/reservations/{reservation_id}/release",
            idempotent=True,
        )
        _raise_unless_ok(answer, self._products.dependency_name)

    def release_each(self, reservation_ids: Sequence[str]) -> None:
        answer = authorised_request(
            self._products,
            self._token,
            "POST",
            "/api/v1/reservations/release",
            json={"reservationIds": list(reservation_ids)},
            idempotent=True,
        )
        if answer.status_code in (404, 405):
            # A product service older than this one (a rolling upgrade): one call each.
            for reservation_id in reservation_ids:
                self.release(reservation_id)
            return
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
        self._remember(user_id)

    def address_of(self, user_id: str, address_id: str) -> ShippingAddress:
        answer = authorised_request(
            self._users, self._token, "GET", f"/api/v1/users/{user_id}/addresses/{address_id}"
        )
        if answer.status_code == 404:
            raise Unprocessable(
                "No such address in this user's address book.",
                errors=[field_error("shippingAddressId", "no such address of this user")],
            )
        _raise_unless_ok(answer, self._users.dependency_name)
        try:
            address = ShippingAddress.from_json(_json(answer))
        except ValueError as malformed:
            log.error(
                "address_malformed", dependency=self._users.dependency_name, error=str(malformed)
            )
            raise _refused_by(self._users.dependency_name, answer.status_code) from malformed
        self._remember(user_id)
        return address

    def profile_of(self, user_id: str) -> UserProfile | None:
        answer = authorised_request(self._users, self._token, "GET", f"/api/v1/users/{user_id}")
        if answer.status_code == 404:
            return None
        _raise_unless_ok(answer, self._users.dependency_name)
        body = _json(answer)
        username, email = body.get("username"), body.get("email")
        if not (body.get("id") == user_id and isinstance(username, str) and isinstance(email, str)):
            log.error("user_malformed", dependency=self._users.dependency_name)
            raise _refused_by(self._users.dependency_name, answer.status_code)
        return UserProfile(user_id, username, email)

    def _remember(self, user_id: str) -> None:
        if len(self._known_until) >= _MAX_REMEMBERED_USERS:
            self._known_until.clear()  # bounded memory; forgetting only costs a lookup
        self._known_until[user_id] = time.monotonic() + self._cache_s


def _short_items_refusal(
    short: list[dict[str, Any]], lines: Sequence[ReservationLine]
) -> Unprocessable | Conflict:
    """An archived product is no longer sold: to our client it does not exist (422), whatever
    else is short. Otherwise each short item and what is available (409)."""
    archived = {item["productId"] for item in short if item.get("archived")}
    if archived:
        return Unprocessable(
            UNKNOWN_PRODUCTS,
            errors=[
                field_error(f"items.{index}.productId", "no such product")
                for index, line in enumerate(lines)
                if line.product_id in archived
            ],
        )
    return Conflict(
        "Not enough stock for every item; nothing was reserved.",
        extra={
            "items": [
                {key: item[key] for key in ("productId", "quantity", "available")} for item in short
            ]
        },
    )


def _reservation_outcome(
    result: Any, lines: Sequence[ReservationLine], dependency: str
) -> dict[str, HeldItem] | Exception:
    """One reservation's answer within a batch: its items as held, or what our client is told."""
    status = result.get("status") if isinstance(result, dict) else None
    body = result.get("body") if isinstance(result, dict) else None
    body = body if isinstance(body, dict) else {}
    if status == 422:
        return Unprocessable(UNKNOWN_PRODUCTS, errors=body.get("errors") or [])
    if status == 409 and "items" in body:
        return _short_items_refusal(body["items"], lines)
    if status != 201:
        return _refused_by(dependency, status)
    return _held_items(body, lines, dependency)


def _held_items(
    reservation: dict[str, Any], lines: Sequence[ReservationLine], dependency: str
) -> dict[str, HeldItem] | Exception:
    """Each reserved product's price and name. A reservation answered without them (a product
    service older than this one) is that service's failure: the caller's abandon releases the
    stock."""
    try:
        held = {
            item["productId"]: HeldItem(Decimal(item["price"]), _product_name(item["name"]))
            for item in reservation["items"]
        }
    except (KeyError, TypeError, ValueError, ArithmeticError):
        log.error("reservation_without_prices_or_names", dependency=dependency)
        return ServiceUnavailable(f"The {dependency} did not price and name the items.")
    if any(line.product_id not in held for line in lines):
        return ServiceUnavailable(f"The {dependency} did not price and name every item.")
    return held


def _product_name(name: object) -> str:
    """A product name as order_items holds it (the product service's own bound)."""
    if not isinstance(name, str) or len(name) > MAX_PRODUCT_NAME_CHARS:
        raise ValueError("not a product name")
    return name


def _json(answer: Answer) -> dict[str, Any]:
    try:
        body = answer.json()
    except ValueError:
        return {}
    return body if isinstance(body, dict) else {}


def _raise_unless_ok(answer: Answer, dependency: str) -> None:
    if answer.status_code >= 300:
        raise _refused_by(dependency, answer.status_code)


def _refused_by(dependency: str, status: object) -> ServiceUnavailable:
    """Anything unexpected from a dependency is its outage to our client, never our 500."""
    log.warning("dependency_refused", dependency=dependency, status=status)
    return ServiceUnavailable(f"The {dependency} could not complete the request.", retry_after_s=2)
