"""Order use cases: the place-order saga with its journal, pay, the journalled cancel, reading.

Placing an order spans three services, so it cannot be one transaction. The attempt journal
makes it safe: every attempt is written (and committed) before any stock is touched, its id is
the reservation id, and whoever gives up on an attempt first claims it (`in_flight` →
`abandoned`) before releasing its reservation. The final transaction completes the attempt only
if it is still `in_flight`, so an order and a released reservation can never both happen.
"""

from __future__ import annotations

import hashlib
import json
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from decimal import Decimal
from typing import TypeVar

import structlog
from sqlalchemy.engine import Connection
from sqlalchemy.exc import IntegrityError

from common.auth import Principal
from common.batching import Coalescer, together_else_alone
from common.db import Database, is_retryable_conflict, isoformat, retry_on_deadlock, utcnow
from common.errors import (
    Conflict,
    Forbidden,
    NotFound,
    ServiceUnavailable,
    Unprocessable,
    field_error,
)
from common.ids import new_id
from common.money import MAX_AMOUNT, format_money
from common.pruning import delete_before
from order_service.attempt_journal import (
    ABANDONED,
    COMPLETED,
    FAILED,
    IN_FLIGHT,
    AttemptRepository,
    OrderAttempt,
)
from order_service.clients import (
    MAX_BATCH_RELEASES,
    ProductCatalog,
    ReservationLine,
    UserDirectory,
    UserProfile,
)
from order_service.orders_repository import (
    ADMIN_CANCEL,
    CANCELLED,
    CUSTOMER_CANCEL,
    PAID,
    PENDING,
    Order,
    OrderFilter,
    OrderLine,
    OrderRepository,
    ShippingAddress,
)
from order_service.outbox_repository import OutboxEvent, OutboxRepository
from order_service.pending_orders import PendingOrders, PendingOrdersCapReached

Clock = Callable[[], datetime]
T = TypeVar("T")
log = structlog.get_logger(__name__)
ORDER_CREATED, ORDER_PAID, ORDER_CANCELLED = "order_created", "order_paid", "order_cancelled"
# How long a client should wait before asking again about an attempt still in flight.
IN_FLIGHT_RETRY_AFTER_S = 1
# How long before a cancel whose release failed is worth asking for again.
CANCEL_RETRY_AFTER_S = 5
# The most orders one group commit writes together.
GROUP_COMMIT_MAX = 16
# The users whose unpaid-order counter this process knows exists (counters are never deleted);
# bounded memory, forgetting one only costs an insert that finds it.
_MAX_COUNTED_USERS = 100_000
DEFAULT_PAYMENT_TIMEOUT_S = 1800
# The most expired orders one round cancels together: their releases are one call to the
# product service (its bound on one batch of releases).
EXPIRY_BATCH = MAX_BATCH_RELEASES
DEFAULT_MAX_PENDING_ORDERS = 100


@dataclass(frozen=True)
class PlaceOrder:
    user_id: str | None
    lines: tuple[ReservationLine, ...]
    idempotency_key: str | None
    shipping_address_id: str | None = None


@dataclass(frozen=True)
class PlacedOrder:
    order: Order
    replayed: bool


@dataclass(frozen=True)
class OrderDetails:
    order: Order
    # None when the user service no longer knows the user (the account was closed).
    user: UserProfile | None


def order_representation(order: Order) -> dict[str, object]:
    return {
        "id": order.id,
        "userId": order.user_id,
        "status": order.status,
        "totalAmount": format_money(order.total_amount),
        "items": [
            {
                "productId": line.product_id,
                "name": line.name,
                "quantity": line.quantity,
                "price": format_money(line.price),
            }
            for line in order.items
        ],
        "cancelReason": order.cancel_reason,
        "shippingAddress": (
            None if order.shipping_address is None else order.shipping_address.as_json()
        ),
        "expiresAt": None if order.expires_at is None else isoformat(order.expires_at),
        "createdAt": isoformat(order.created_at),
        "updatedAt": isoformat(order.updated_at),
    }


def order_details_representation(details: OrderDetails) -> dict[str, object]:
    user = details.user
    return {
        **order_representation(details.order),
        "user": (
            {"id": details.order.user_id, "closed": True}
            if user is None
            else {"id": user.id, "username": user.username, "email": user.email}
        ),
    }


@dataclass(frozen=True)
class _Record:
    """An order's final writes: its attempt completed, the order, its `order_created` event."""

    attempt_id: str
    order: Order
    event: OutboxEvent


class _NoLongerInFlight(ServiceUnavailable):
    def __init__(self) -> None:
        super().__init__("Placing the order took too long; try again.")


def _group_committed(
    write: Callable[[list[T]], None],
) -> Callable[[list[T]], list[Exception | None]]:
    """A batch written in one transaction, or each alone when one cannot go with the rest."""

    def write_each(items: list[T]) -> list[Exception | None]:
        return together_else_alone(items, write, falls_back=_one_cannot_go_with_the_rest)

    return write_each


def _one_cannot_go_with_the_rest(failure: Exception) -> bool:
    """A key used before, an attempt the worker claimed, a user at the cap of unpaid orders, or
    a deadlock: the batch rolled back for one of its items, so each is tried on its own."""
    return isinstance(
        failure, IntegrityError | _NoLongerInFlight | PendingOrdersCapReached
    ) or is_retryable_conflict(failure)


class OrderService:
    def __init__(
        self,
        db: Database,
        catalog: ProductCatalog,
        users: UserDirectory,
        *,
        clock: Clock = utcnow,
        request_id: Callable[[], str | None] = lambda: None,
        payment_timeout_s: float = DEFAULT_PAYMENT_TIMEOUT_S,
        max_pending_orders: int = DEFAULT_MAX_PENDING_ORDERS,
    ) -> None:
        self._db = db
        self._catalog = catalog
        self._users = users
        self._clock = clock
        self._request_id = request_id
        self._payment_timeout = timedelta(seconds=payment_timeout_s)
        self._max_pending_orders = max_pending_orders
        self._counted_users: set[str] = set()
        # Group commit: the journal entries, and the final writes, of the orders this process
        # places at the same time share a transaction (see common.batching).
        self._journal_each = _group_committed(self._journal_together)
        self._record_each = _group_committed(self._record_together)
        self._journals = Coalescer("journal", self._journal_each, max_calls=GROUP_COMMIT_MAX)
        self._records = Coalescer("orders", self._record_each, max_calls=GROUP_COMMIT_MAX)

    # -- placing an order: the saga --------------------------------------------------------

    def place_order(self, command: PlaceOrder, principal: Principal) -> PlacedOrder:
        user_id = _orderer(command, principal)
        attempt = OrderAttempt(
            id=new_id(),
            user_id=principal.user_id,
            idempotency_key=command.idempotency_key,
            request_hash=_request_hash(user_id, command.lines, command.shipping_address_id),
            state=IN_FLIGHT,
            order_id=None,
            orderer_id=user_id,
        )
        self._start_counting(user_id)
        earlier_order_id = self._journal(attempt)
        if earlier_order_id is not None:
            return PlacedOrder(self._order(earlier_order_id), replayed=True)
        try:
            order = self._reserve_and_record(attempt.id, user_id, command)
        except BaseException:
            self._abandon(attempt.id)
            raise
        return PlacedOrder(order, replayed=False)

    def _journal(self, attempt: OrderAttempt) -> str | None:
        """Commits the attempt before anything else happens. Returns the order of an earlier
        completed attempt with this key and body, or raises what the key's state decides."""
        for _ in range(3):
            try:
                self._journals.call(attempt)
                return None
            except IntegrityError:
                assert attempt.idempotency_key is not None  # only a key can collide
            with self._db.transaction() as connection:
                attempts = AttemptRepository(connection)
                earlier = attempts.by_key(attempt.user_id, attempt.idempotency_key)
                if earlier is None:
                    continue  # restarted under a new id in between; look again
                if earlier.state == FAILED:
                    if attempts.restart_failed(earlier.id, attempt, self._clock()):
                        # A new attempt, so a new unpaid slot (refused at the cap: the restart
                        # rolls back and the key stays failed).
                        self._take_slots(connection, [attempt])
                        return None
                    continue
                return _answer_for_earlier(earlier, attempt.request_hash)
        raise Conflict(
            "Another request with this Idempotency-Key is in flight.",
            headers={"Retry-After": str(IN_FLIGHT_RETRY_AFTER_S)},
        )

    def _reserve_and_record(self, attempt_id: str, user_id: str, command: PlaceOrder) -> Order:
        lines = command.lines
        address = self._shipping_address(user_id, command.shipping_address_id)
        # The attempt id is the reservation id, so a retried reserve never takes stock twice.
        held = self._catalog.reserve(attempt_id, lines)
        total = sum(
            (held[line.product_id].price * line.quantity for line in lines), Decimal("0.00")
        )
        if total > MAX_AMOUNT:
            # DECIMAL(12,2) cannot hold it; the caller's abandon gives the stock back.
            raise Unprocessable(
                "The order's total is more than an order can hold.",
                errors=[field_error("items", f"the total must be at most {MAX_AMOUNT}")],
            )
        now = self._clock()
        items = tuple(
            OrderLine(
                line.product_id,
                line.quantity,
                held[line.product_id].price,
                held[line.product_id].name,
            )
            for line in sorted(lines, key=lambda line: line.product_id)
        )
        order = Order(
            id=new_id(),
            user_id=user_id,
            status=PENDING,
            total_amount=total,
            reservation_id=attempt_id,
            items=items,
            created_at=now,
            updated_at=now,
            shipping_address=address,
            expires_at=now + self._payment_timeout,
        )
        self._records.call(_Record(attempt_id, order, self._event(order, ORDER_CREATED)))
        return order

    def _shipping_address(self, user_id: str, address_id: str | None) -> ShippingAddress | None:
        """Reading the user's address proves the user exists too, so either is one call."""
        if address_id is None:
            self._users.require_user(user_id)
            return None
        return self._users.address_of(user_id, address_id)

    def _journal_together(self, attempts: list[OrderAttempt]) -> None:
        # A key used before refuses the whole insert (IntegrityError); a user at the cap
        # refuses the whole batch too (PendingOrdersCapReached); either is then tried alone.
        with self._db.transaction() as connection:
            AttemptRepository(connection).add_each(attempts, self._clock())
            self._take_slots(connection, attempts)

    def _take_slots(self, connection: Connection, attempts: Sequence[OrderAttempt]) -> None:
        slots = Counter(attempt.orderer_id for attempt in attempts)
        PendingOrders(connection).take_slots(slots, self._max_pending_orders)

    def _start_counting(self, user_id: str) -> None:
        """Makes sure the user's counter exists before their first attempt takes a slot in it:
        once per user and process, in a transaction of its own (so the journal's stays one
        insert and one update)."""
        if user_id in self._counted_users:
            return
        try:
            with self._db.transaction() as connection:
                PendingOrders(connection).start_counting(user_id)
        except IntegrityError:
            pass  # counted already
        if len(self._counted_users) >= _MAX_COUNTED_USERS:
            self._counted_users.clear()
        self._counted_users.add(user_id)

    def _record_together(self, records: list[_Record]) -> None:
        """Each attempt still in flight becomes its order with its event, in one transaction."""
        with self._db.transaction() as connection:
            completed = AttemptRepository(connection).complete_each(
                {record.attempt_id: record.order.id for record in records}, self._clock()
            )
            if completed != len(records):
                # The worker judged an attempt lost and is giving its stock back.
                raise _NoLongerInFlight
            OrderRepository(connection).add_each([record.order for record in records])
            OutboxRepository(connection).add_each([record.event for record in records])

    def _abandon(self, attempt_id: str) -> None:
        """Gives back what a failed attempt may hold. Never raises: what cannot be done now
        (the database or the product service is down) the worker finishes later."""
        try:
            with self._db.transaction() as connection:
                claimed = AttemptRepository(connection).move(
                    attempt_id, IN_FLIGHT, ABANDONED, self._clock()
                )
            if claimed:
                self.release_abandoned(attempt_id)
        except Exception:
            log.warning("attempt_left_for_the_worker", attempt_id=attempt_id, exc_info=True)

    def release_abandoned(self, attempt_id: str) -> None:
        """Releasing first and recording after: a crash in between only repeats the release,
        which is idempotent."""
        self._catalog.release(attempt_id)
        with self._db.transaction() as connection:
            if AttemptRepository(connection).move(attempt_id, ABANDONED, FAILED, self._clock()):
                PendingOrders(connection).free_slot_of_attempt(attempt_id)

    def repair_attempts(self, *, stale_after_s: float, limit: int = 100) -> int:
        """Claims attempts whose request died in flight, then releases every abandoned one.
        Returns how many reservations were released."""
        started_before = self._clock() - timedelta(seconds=stale_after_s)
        with self._db.transaction() as connection:
            attempts = AttemptRepository(connection)
            for attempt_id in attempts.stale_in_flight(started_before, limit):
                attempts.move(attempt_id, IN_FLIGHT, ABANDONED, self._clock())
            abandoned = attempts.abandoned(limit)
        for attempt_id in abandoned:
            self.release_abandoned(attempt_id)
        return len(abandoned)

    def prune_failed_attempts(self, *, retention: timedelta, slice_size: int = 1000) -> int:
        """Deletes failed attempts older than `retention`, a slice per short transaction."""
        return delete_before(
            self._db,
            AttemptRepository,
            AttemptRepository.delete_failed_before,
            self._clock() - retention,
            slice_size=slice_size,
        )

    # -- pay and cancel ---------------------------------------------------------------------

    @retry_on_deadlock
    def pay_order(self, order_id: str, principal: Principal) -> Order:
        """One short transaction: PENDING becomes PAID with its event. Paying again answers
        the paid order; a cancelled order, or one whose cancel has begun, is a conflict."""
        with self._db.transaction() as connection:
            orders = OrderRepository(connection)
            # The row lock makes a concurrent pay, or a cancel beginning, wait: one of them wins.
            order = _visible(orders.get(order_id, for_update=True), principal)
            if order.status == PAID:
                return order
            if order.status != PENDING or order.cancelling:
                raise Conflict("The order is cancelled or being cancelled; it cannot be paid.")
            paid = replace(order, status=PAID, updated_at=self._clock(), expires_at=None)
            orders.set_status(order.id, PAID, paid.updated_at)
            OutboxRepository(connection).add(self._event(paid, ORDER_PAID))
        return paid

    def cancel_order(self, order_id: str, principal: Principal) -> Order:
        reason = ADMIN_CANCEL if principal.is_admin else CUSTOMER_CANCEL
        return self.cancel(order_id, reason, principal=principal)

    def cancel(self, order_id: str, reason: str, *, principal: Principal | None = None) -> Order:
        """The journalled cancel, whoever starts it (`principal` None: the system itself):
        (1) the reason is committed on the order, which stays PENDING but can no longer be
        paid; (2) the reservation is released with no row lock or connection held; (3) the
        order becomes CANCELLED with its event. Whatever fails after (1) leaves a begun cancel
        that a repeat, or the worker's `finish_begun_cancels`, carries on; the release is
        idempotent, so the stock comes back exactly once."""
        order = self._begin_cancel(order_id, reason, principal)
        if order.status == CANCELLED:
            return order
        self._release_for_cancel(order)
        return self._finish_cancel(order)

    def finish_begun_cancels(self, *, begun_before_s: float, limit: int = 100) -> int:
        """The worker's part: cancels begun at least `begun_before_s` ago and not finished (a
        release that failed, a process that died) are carried on, at most `limit` a round:
        their releases in one call, then all finished in one transaction. Returns how many;
        raises, finishing none, when the release call fails."""
        cutoff = self._clock() - timedelta(seconds=begun_before_s)
        with self._db.transaction() as connection:
            begun = OrderRepository(connection).cancels_begun_before(
                cutoff, min(limit, MAX_BATCH_RELEASES)
            )
        if begun:
            self._catalog.release_each([order.reservation_id for order in begun])
            self._finish_cancels(begun)
        return len(begun)

    def expire_due_orders(self, *, limit: int = EXPIRY_BATCH) -> int:
        """The worker's payment timeout, one batch: the cancels of up to `limit` PENDING orders
        past their expiresAt begin in one transaction (reason `payment_timeout`), their
        reservations are released in one call, and they finish in one transaction. A release
        that fails leaves the cancels begun, for `finish_begun_cancels`. Returns how many
        orders were cancelled."""
        with self._db.transaction() as connection:
            begun = OrderRepository(connection).begin_expiries(self._clock(), limit)
        if not begun:
            return 0
        try:
            self._catalog.release_each([order.reservation_id for order in begun])
        except Exception:
            log.warning("expiry_left_for_the_worker", orders=len(begun), exc_info=True)
            return 0
        self._finish_cancels(begun)
        return len(begun)

    @retry_on_deadlock
    def _finish_cancels(self, begun: Sequence[Order]) -> None:
        """Step (3) for a batch: each still-begun order CANCELLED with its event, together."""
        now = self._clock()
        with self._db.transaction() as connection:
            # None when a repeated cancel finished every one of them first.
            finished = set(OrderRepository(connection).finish_cancels([o.id for o in begun], now))
            if finished:
                OutboxRepository(connection).add_each(
                    [
                        self._event(
                            replace(order, status=CANCELLED, updated_at=now, expires_at=None),
                            ORDER_CANCELLED,
                        )
                        for order in begun
                        if order.id in finished
                    ]
                )

    @retry_on_deadlock
    def _begin_cancel(self, order_id: str, reason: str, principal: Principal | None) -> Order:
        """Step (1): returns the order as the cancel goes on with it (already CANCELLED, or
        PENDING with the first cancel's reason, which a later one never replaces)."""
        with self._db.transaction() as connection:
            orders = OrderRepository(connection)
            # The row lock orders this against a pay at the same moment: one of them wins.
            order = orders.get(order_id, for_update=True)
            order = _visible(order, principal) if principal else _existing(order)
            if order.status == PAID:
                raise Conflict("The order is paid; it can no longer be cancelled.")
            if order.status == CANCELLED or order.cancelling:
                return order
            now = self._clock()
            orders.begin_cancel(order.id, reason, now)
        return replace(order, cancel_reason=reason, updated_at=now)

    def _release_for_cancel(self, order: Order) -> None:
        """Step (2), with no database connection held: a slow product service holds up this
        cancel only, never the pool or the order's row."""
        try:
            self._catalog.release(order.reservation_id)
        except Exception as exc:
            log.warning("cancel_left_for_the_worker", order_id=order.id, exc_info=True)
            raise ServiceUnavailable(
                "The cancel has begun but its stock could not be released yet; the order can "
                "no longer be paid, and the cancel finishes on its own or when asked again.",
                retry_after_s=CANCEL_RETRY_AFTER_S,
            ) from exc

    @retry_on_deadlock
    def _finish_cancel(self, order: Order) -> Order:
        """Step (3): CANCELLED and its event in one transaction, by whichever finisher comes
        first (a repeated cancel and the worker may race; the other reads the result)."""
        cancelled = replace(order, status=CANCELLED, updated_at=self._clock(), expires_at=None)
        with self._db.transaction() as connection:
            if OrderRepository(connection).finish_cancel(order.id, cancelled.updated_at):
                OutboxRepository(connection).add(self._event(cancelled, ORDER_CANCELLED))
                return cancelled
        return self._order(order.id)

    # -- reading ----------------------------------------------------------------------------

    def get_order(self, order_id: str, principal: Principal) -> Order:
        with self._db.transaction() as connection:
            return _visible(OrderRepository(connection).get(order_id), principal)

    def order_details(self, order_id: str, principal: Principal) -> OrderDetails:
        """The order with its user as the user service has them now (no transaction is held
        during that call)."""
        order = self.get_order(order_id, principal)
        return OrderDetails(order, self._users.profile_of(order.user_id))

    def list_orders(
        self, principal: Principal, where: OrderFilter, before_id: str | None, limit: int
    ) -> list[Order]:
        """Newest first; `before_id` is the last order of the previous page."""
        if not principal.is_admin:
            if where.user_id not in (None, principal.user_id):
                raise Forbidden("Customers may list only their own orders.")
            where = replace(where, user_id=principal.user_id)
        with self._db.transaction() as connection:
            return OrderRepository(connection).page(where, before_id, limit)

    def _order(self, order_id: str) -> Order:
        with self._db.transaction() as connection:
            order = OrderRepository(connection).get(order_id)
        assert order is not None, "orders are never deleted, and every caller saw this one"
        return order

    def _event(self, order: Order, event_type: str) -> OutboxEvent:
        event_id = new_id()
        body = {
            "eventId": event_id,
            "eventType": event_type,
            "occurredAt": isoformat(order.updated_at),
            "orderId": order.id,
            **{k: v for k, v in order_representation(order).items() if k in _EVENT_FIELDS},
        }
        if event_type == ORDER_CANCELLED:
            body["reason"] = order.cancel_reason
        return OutboxEvent(
            id=event_id,
            event_type=event_type,
            order_id=order.id,
            payload=json.dumps(body, separators=(",", ":")),
            request_id=self._request_id(),
            created_at=self._clock(),
        )


_EVENT_FIELDS = ("userId", "status", "totalAmount", "items", "shippingAddress", "expiresAt")


def _orderer(command: PlaceOrder, principal: Principal) -> str:
    """Customers order for themselves; an admin may order for anyone."""
    if command.user_id is None or command.user_id == principal.user_id:
        return principal.user_id
    if not principal.is_admin:
        raise Forbidden("Customers may place orders only for themselves.")
    return command.user_id


def _request_hash(
    user_id: str, lines: Sequence[ReservationLine], shipping_address_id: str | None = None
) -> str:
    """The same order, whatever the order of its items. The address counts only when given,
    so a body without one hashes as it did before addresses existed."""
    body: dict[str, object] = {
        "userId": user_id,
        "items": sorted((line.product_id, line.quantity) for line in lines),
    }
    if shipping_address_id is not None:
        body["shippingAddressId"] = shipping_address_id
    return hashlib.sha256(json.dumps(body).encode()).hexdigest()


def _answer_for_earlier(earlier: OrderAttempt, request_hash: str) -> str:
    if earlier.request_hash != request_hash:
        raise Unprocessable(
            "This Idempotency-Key was used with a different request body.",
            errors=[field_error("Idempotency-Key", "already used for another request")],
        )
    if earlier.state == COMPLETED and earlier.order_id is not None:
        return earlier.order_id
    raise Conflict(
        "A request with this Idempotency-Key is still in flight; retry shortly.",
        headers={"Retry-After": str(IN_FLIGHT_RETRY_AFTER_S)},
    )


def _visible(order: Order | None, principal: Principal) -> Order:
    """Another customer's order is answered exactly like one that does not exist."""
    if order is None or not (principal.is_admin or order.user_id == principal.user_id):
        raise NotFound("No such order.")
    return order


def _existing(order: Order | None) -> Order:
    if order is None:
        raise NotFound("No such order.")
    return order
