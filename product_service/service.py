"""Product use cases: the catalog, its search, and reserving and releasing stock.

Each use case is one transaction. Reservations are idempotent per reservation id: the
(reservation, product) line is written first, so a retry collides with it on the primary key
and is answered from what the first request did, never by moving stock again.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from decimal import Decimal

from sqlalchemy.exc import IntegrityError

from common.db import Database, isoformat, retry_on_deadlock, utcnow
from common.errors import (
    Conflict,
    NotFound,
    PreconditionFailed,
    Problem,
    Unprocessable,
    field_error,
)
from common.etags import if_match_satisfied, strong_etag
from common.ids import new_id
from common.money import format_money
from product_service.repository import (
    BATCH_MARKER,
    HELD,
    RELEASED,
    Product,
    ProductRepository,
    ReservationLine,
    ReservationRepository,
    SearchFilter,
    StockLevel,
)

Clock = Callable[[], datetime]


@dataclass(frozen=True)
class ProductFields:
    name: str
    description: str
    price: Decimal
    stock: int


@dataclass(frozen=True)
class ProductChanges:
    name: str | None = None
    description: str | None = None
    price: Decimal | None = None
    stock: int | None = None


@dataclass(frozen=True)
class StockReservation:
    product_id: str
    reservation_id: str
    quantity: int
    stock: int


@dataclass(frozen=True)
class Reservation:
    reservation_id: str
    state: str
    # Each product's line; its price and name are those it was held at (batch reservations
    # only).
    items: list[ReservationLine]


def product_representation(product: Product) -> dict[str, object]:
    return {
        "id": product.id,
        "name": product.name,
        "description": product.description,
        "price": format_money(product.price),
        "stock": product.stock,
        "archivedAt": isoformat(product.archived_at) if product.archived_at else None,
        "createdAt": isoformat(product.created_at),
        "updatedAt": isoformat(product.updated_at),
    }


def etag_of(product: Product) -> str:
    return strong_etag(product_representation(product))


class ProductService:
    def __init__(self, db: Database, *, clock: Clock = utcnow) -> None:
        self._db = db
        self._clock = clock

    # -- catalog ---------------------------------------------------------------------------

    def create_product(self, fields: ProductFields) -> Product:
        now = self._clock()
        product = Product(
            new_id(), fields.name, fields.description, fields.price, fields.stock, None, now, now
        )
        with self._db.transaction() as connection:
            ProductRepository(connection).add(product)
        return product

    def get_product(self, product_id: str) -> Product:
        """Archived products are still answered, so past orders can resolve them."""
        with self._db.transaction() as connection:
            product = ProductRepository(connection).get(product_id)
        if product is None:
            raise NotFound("No such product.")
        return product

    def list_products(self, after_id: str | None, limit: int) -> list[Product]:
        with self._db.transaction() as connection:
            return ProductRepository(connection).active_page(after_id, limit)

    def products_by_ids(self, product_ids: Sequence[str]) -> list[Product]:
        with self._db.transaction() as connection:
            return ProductRepository(connection).active_by_ids(product_ids)

    def search_products(
        self, search: SearchFilter, after_id: str | None, limit: int
    ) -> list[Product]:
        with self._db.transaction() as connection:
            return ProductRepository(connection).search(search, after_id, limit)

    def replace_product(
        self, product_id: str, fields: ProductFields, if_match: str | None
    ) -> Product:
        changes = ProductChanges(fields.name, fields.description, fields.price, fields.stock)
        return self.change_product(product_id, changes, if_match)

    @retry_on_deadlock
    def change_product(
        self, product_id: str, changes: ProductChanges, if_match: str | None
    ) -> Product:
        with self._db.transaction() as connection:
            repository = ProductRepository(connection)
            # Locked, so the ETag compared is the one the update replaces.
            current = self._editable(repository.get(product_id, for_update=True), if_match)
            updated = replace(
                current,
                name=current.name if changes.name is None else changes.name,
                description=(
                    current.description if changes.description is None else changes.description
                ),
                price=current.price if changes.price is None else changes.price,
                stock=current.stock if changes.stock is None else changes.stock,
                updated_at=self._clock(),
            )
            repository.update(updated)
        return updated

    @retry_on_deadlock
    def archive_product(self, product_id: str, if_match: str | None) -> None:
        with self._db.transaction() as connection:
            repository = ProductRepository(connection)
            product = repository.get(product_id, for_update=True)
            if product is None:
                raise NotFound("No such product.")
            if product.archived:
                return
            _require_match(product, if_match)
            repository.archive(product_id, self._clock())

    @staticmethod
    def _editable(product: Product | None, if_match: str | None) -> Product:
        if product is None:
            raise NotFound("No such product.")
        if product.archived:
            raise Conflict("The product is archived; archived products cannot be changed.")
        _require_match(product, if_match)
        return product

    # -- reservations ----------------------------------------------------------------------

    @retry_on_deadlock
    def reserve_stock(
        self, product_id: str, reservation_id: str, quantity: int
    ) -> StockReservation:
        """Holds `quantity` of one product under `reservation_id`, at most once."""
        try:
            with self._db.transaction() as connection:
                products = ProductRepository(connection)
                lines = ReservationRepository(connection)
                # Stock first: the product row lock then queues concurrent retries of this
                # reservation, so each finds the committed line below instead of many waiting
                # on its key together (which InnoDB answers with a deadlock per waiter).
                if products.take_stock(product_id, quantity):
                    # A retry of a reservation that already holds stock collides here, and
                    # the rollback gives back what it just took.
                    lines.add(
                        reservation_id, [ReservationLine(product_id, quantity, HELD)], self._clock()
                    )
                    stock = products.stock_of(product_id)
                    assert stock is not None
                    return StockReservation(product_id, reservation_id, quantity, stock)
                if lines.line(reservation_id, product_id) is None:
                    raise _not_reservable(products.get(product_id))
        except IntegrityError:
            pass
        return self._replayed_stock_reservation(product_id, reservation_id, quantity)

    def _replayed_stock_reservation(
        self, product_id: str, reservation_id: str, quantity: int
    ) -> StockReservation:
        with self._db.transaction() as connection:
            line = ReservationRepository(connection).line(reservation_id, product_id)
            stock = ProductRepository(connection).stock_of(product_id)
        if line is None or stock is None:
            raise Conflict("The reservation changed while it was being retried; try again.")
        if line.state != HELD:
            raise Conflict("This reservation has already been released.")
        if line.quantity != quantity:
            raise Conflict(
                "This reservation id already holds a different quantity of this product.",
                extra={"quantity": line.quantity},
            )
        return StockReservation(product_id, reservation_id, quantity, stock)

    @retry_on_deadlock
    def release_stock(self, product_id: str, reservation_id: str) -> StockReservation:
        """Gives one product's held stock back, exactly once however often it is asked."""
        with self._db.transaction() as connection:
            reservations = ReservationRepository(connection)
            products = ProductRepository(connection)
            line = reservations.line(reservation_id, product_id, for_update=True)
            if line is None:
                raise NotFound("No such reservation for this product.")
            if line.state == HELD:
                reservations.mark_released(reservation_id, self._clock(), product_id=product_id)
                products.return_stock_of_each({product_id: line.quantity})
            stock = products.stock_of(product_id)
        return StockReservation(product_id, reservation_id, line.quantity, stock or 0)

    @retry_on_deadlock
    def reserve_items(self, reservation_id: str, items: Sequence[tuple[str, int]]) -> Reservation:
        """All items or none, in one transaction; a retry is answered, not redone."""
        wanted = dict(sorted(items))
        try:
            with self._db.transaction() as connection:
                products = ProductRepository(connection)
                # Ascending id order, the order every batch locks in, so batches over the same
                # products queue behind each other instead of deadlocking. A retry of this
                # reservation queues here too, and then collides with the committed lines.
                locked = products.lock_stock(list(wanted))
                held = [
                    _held_line(product_id, quantity, locked[product_id])
                    for product_id, quantity in wanted.items()
                    if product_id in locked
                ]
                ReservationRepository(connection).add(
                    reservation_id, [_batch_marker(HELD), *held], self._clock()
                )
                _refuse_unless_all_available(list(items), locked)
                if products.take_stock_of_each(wanted) != len(wanted):
                    raise Conflict("The stock changed while it was being reserved; try again.")
        except IntegrityError:
            return self._replayed_reservation(reservation_id, wanted)
        return Reservation(reservation_id, HELD, held)

    def reserve_batch(
        self, requests: Sequence[tuple[str, Sequence[tuple[str, int]]]]
    ) -> list[Reservation | Problem]:
        """Several reservations, each all or nothing on its own, answered in request order.

        Those that fit are held together: one lock, one insert and one stock update for the
        whole batch, in one transaction. Any other (short of stock, naming an unknown product,
        or a retry of an earlier one) then goes alone through `reserve_items`, so it is
        answered exactly as a request of its own would be."""
        together = self._hold_together({rid: dict(sorted(items)) for rid, items in requests})
        return [
            together[rid] if rid in together else self._reserve_alone(rid, items)
            for rid, items in requests
        ]

    def _reserve_alone(
        self, reservation_id: str, items: Sequence[tuple[str, int]]
    ) -> Reservation | Problem:
        try:
            return self.reserve_items(reservation_id, items)
        except Problem as refusal:
            return refusal

    @retry_on_deadlock
    def _hold_together(self, wanted: dict[str, dict[str, int]]) -> dict[str, Reservation]:
        """Holds every reservation the locked stock covers, in turn; none if any collides."""
        try:
            with self._db.transaction() as connection:
                products = ProductRepository(connection)
                locked = products.lock_stock(
                    sorted({pid for items in wanted.values() for pid in items})
                )
                granted = _grant_in_turn(wanted, locked)
                if not granted:
                    return {}
                ReservationRepository(connection).add_each(
                    {rid: [_batch_marker(HELD), *lines] for rid, lines in granted.items()},
                    self._clock(),
                )
                taken = _total_quantities(granted.values())
                if products.take_stock_of_each(taken) != len(taken):
                    raise _StockMoved  # impossible under the row locks; never trust it silently
        except (IntegrityError, _StockMoved):
            # One of them was reserved or released before: each now answers on its own.
            return {}
        return {rid: Reservation(rid, HELD, lines) for rid, lines in granted.items()}

    def _replayed_reservation(self, reservation_id: str, wanted: dict[str, int]) -> Reservation:
        with self._db.transaction() as connection:
            lines = ReservationRepository(connection).lines(reservation_id)
        marker = next((line for line in lines if line.product_id == BATCH_MARKER), None)
        if any(line.state == RELEASED for line in lines):
            raise Conflict("This reservation has already been released.")
        held = _product_lines(lines)
        if marker is None or _quantities(held) != wanted:
            raise Conflict("This reservation id is already used for different items.")
        return Reservation(reservation_id, HELD, held)

    @retry_on_deadlock
    def release_reservation(self, reservation_id: str) -> Reservation:
        """Gives back every line still held, exactly once. Releasing an unknown reservation
        is allowed (the caller may not know whether its reserve arrived) and is remembered."""
        try:
            with self._db.transaction() as connection:
                reservations = ReservationRepository(connection)
                lines = reservations.lines(reservation_id, for_update=True)
                if not lines:
                    reservations.add(reservation_id, [_batch_marker(RELEASED)], self._clock())
                    return Reservation(reservation_id, RELEASED, [])
                held = [line for line in lines if line.state == HELD]
                if held:
                    reservations.mark_released(reservation_id, self._clock())
                    ProductRepository(connection).return_stock_of_each(
                        _quantities(_product_lines(held))
                    )
        except IntegrityError:
            # Its reservation arrived at the same moment; release what it now holds.
            return self.release_reservation(reservation_id)
        return Reservation(reservation_id, RELEASED, _product_lines(lines))

    @retry_on_deadlock
    def release_reservations(self, reservation_ids: Sequence[str]) -> list[Reservation]:
        """Several releases in one transaction (one lock of their lines, one update of their
        state and one of the stock), each answered as `release_reservation` answers it alone,
        in request order. If one of them is being reserved at this moment, each goes alone."""
        try:
            with self._db.transaction() as connection:
                reservations = ReservationRepository(connection)
                lines_of = reservations.lines_of(reservation_ids, for_update=True)
                now = self._clock()
                unknown = [rid for rid in reservation_ids if rid not in lines_of]
                if unknown:
                    reservations.add_each({rid: [_batch_marker(RELEASED)] for rid in unknown}, now)
                held = {
                    rid: [line for line in _product_lines(lines) if line.state == HELD]
                    for rid, lines in lines_of.items()
                }
                holding = [rid for rid, lines in held.items() if lines]
                if holding:
                    reservations.mark_released_each(holding, now)
                    ProductRepository(connection).return_stock_of_each(
                        _total_quantities(held.values())
                    )
        except IntegrityError:
            return [self.release_reservation(rid) for rid in reservation_ids]
        return [
            Reservation(rid, RELEASED, _product_lines(lines_of.get(rid, [])))
            for rid in reservation_ids
        ]


class _StockMoved(Exception):
    """The stock update did not match the rows it had locked; the batch is not trusted."""


def _grant_in_turn(
    wanted: dict[str, dict[str, int]], locked: dict[str, StockLevel]
) -> dict[str, list[ReservationLine]]:
    """In request order, each reservation whose every item the stock left still covers."""
    available = {product_id: level.available for product_id, level in locked.items()}
    granted: dict[str, list[ReservationLine]] = {}
    for reservation_id, quantities in wanted.items():
        if all(available.get(pid, 0) >= quantity for pid, quantity in quantities.items()):
            for product_id, quantity in quantities.items():
                available[product_id] -= quantity
            granted[reservation_id] = [
                _held_line(product_id, quantity, locked[product_id])
                for product_id, quantity in quantities.items()
            ]
    return granted


def _held_line(product_id: str, quantity: int, product: StockLevel) -> ReservationLine:
    """A line remembers the product's price and name as they were under the stock's lock."""
    return ReservationLine(product_id, quantity, HELD, product.price, product.name)


def _total_quantities(lines_of_each: Iterable[list[ReservationLine]]) -> dict[str, int]:
    totals: dict[str, int] = {}
    for lines in lines_of_each:
        for line in lines:
            totals[line.product_id] = totals.get(line.product_id, 0) + line.quantity
    return totals


def _batch_marker(state: str) -> ReservationLine:
    return ReservationLine(BATCH_MARKER, 0, state)


def _product_lines(lines: Iterable[ReservationLine]) -> list[ReservationLine]:
    return [line for line in lines if line.product_id != BATCH_MARKER]


def _quantities(lines: Iterable[ReservationLine]) -> dict[str, int]:
    return {line.product_id: line.quantity for line in lines}


def _require_match(product: Product, if_match: str | None) -> None:
    if not if_match_satisfied(if_match, etag_of(product)):
        raise PreconditionFailed(
            "The product has changed since it was read; fetch it again and retry.",
            headers={"ETag": etag_of(product)},
        )


def _not_reservable(product: Product | None) -> Exception:
    if product is None:
        return NotFound("No such product.")
    available = 0 if product.archived else product.stock
    return Conflict(
        "Not enough stock." if not product.archived else "The product is archived.",
        extra={"productId": product.id, "available": available},
    )


def _refuse_unless_all_available(
    items: list[tuple[str, int]], locked: dict[str, StockLevel]
) -> None:
    unknown = [
        field_error(f"items.{index}.productId", "no such product")
        for index, (product_id, _) in enumerate(items)
        if product_id not in locked
    ]
    if unknown:
        raise Unprocessable("Some items name products that do not exist.", errors=unknown)
    short = [
        {
            "productId": product_id,
            "quantity": quantity,
            "available": locked[product_id].available,
            "archived": locked[product_id].archived,
        }
        for product_id, quantity in items
        if locked[product_id].available < quantity
    ]
    if short:
        raise Conflict(
            "Not enough stock for every item; nothing was reserved.", extra={"items": short}
        )
