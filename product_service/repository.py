"""The product database: tables and every SQL statement the service runs."""

from __future__ import annotations

import functools
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal

import sqlalchemy as sa
from sqlalchemy.dialects import mysql
from sqlalchemy.engine import Connection

from common.db import UtcDateTime

metadata = sa.MetaData()

products = sa.Table(
    "products",
    metadata,
    sa.Column("id", sa.String(36), primary_key=True),
    sa.Column("name", sa.String(200), nullable=False),
    sa.Column("description", sa.Text(), nullable=False),
    sa.Column("price", sa.Numeric(12, 2), nullable=False),
    sa.Column("stock", sa.Integer(), nullable=False),
    sa.Column("archived_at", UtcDateTime(), nullable=True),
    sa.Column("created_at", UtcDateTime(), nullable=False),
    sa.Column("updated_at", UtcDateTime(), nullable=False),
)

reservations = sa.Table(
    "reservations",
    metadata,
    sa.Column("reservation_id", sa.String(64), primary_key=True),
    sa.Column("product_id", sa.String(36), primary_key=True),
    sa.Column("quantity", sa.Integer(), nullable=False),
    sa.Column("state", sa.String(16), nullable=False),
    # The product's price and name when the line was taken by a batch reservation; NULL
    # otherwise (and the name on lines taken before names were kept).
    sa.Column("price", sa.Numeric(12, 2), nullable=True),
    sa.Column("name", sa.String(200), nullable=True),
    sa.Column("created_at", UtcDateTime(), nullable=False),
    sa.Column("updated_at", UtcDateTime(), nullable=False),
)

HELD, RELEASED = "held", "released"
# Every batch reservation also writes a line for this id: a retried batch collides on it, and
# a release that arrives before its reservation leaves it behind as `released`, so the late
# reservation is refused instead of holding stock that nobody will ever give back.
BATCH_MARKER = "00000000-0000-0000-0000-000000000000"
# InnoDB's FULLTEXT index skips words shorter than innodb_ft_min_token_size (3 by default).
_FULLTEXT_MIN_WORD = 3


@dataclass(frozen=True)
class Product:
    id: str
    name: str
    description: str
    price: Decimal
    stock: int
    archived_at: datetime | None
    created_at: datetime
    updated_at: datetime

    @property
    def archived(self) -> bool:
        return self.archived_at is not None


@dataclass(frozen=True)
class ReservationLine:
    product_id: str
    quantity: int
    state: str
    price: Decimal | None = None
    name: str | None = None


@dataclass(frozen=True)
class StockLevel:
    """What a reservation needs of a locked product row, and nothing more."""

    id: str
    name: str
    price: Decimal
    stock: int
    archived: bool

    @property
    def available(self) -> int:
        return 0 if self.archived else self.stock


@dataclass(frozen=True)
class SearchFilter:
    q: str | None = None
    min_price: Decimal | None = None
    max_price: Decimal | None = None
    in_stock: bool | None = None


_PRODUCT_COLUMNS = (
    products.c.id,
    products.c.name,
    products.c.description,
    products.c.price,
    products.c.stock,
    products.c.archived_at,
    products.c.created_at,
    products.c.updated_at,
)


def _product(row: sa.Row[tuple[object, ...]]) -> Product:
    return Product(
        id=row.id,
        name=row.name,
        description=row.description,
        price=Decimal(row.price),
        stock=int(row.stock),
        archived_at=row.archived_at,
        created_at=row.created_at,
        updated_at=row.updated_at,
    )


class ProductRepository:
    def __init__(self, connection: Connection) -> None:
        self._db = connection

    def add(self, product: Product) -> None:
        self._db.execute(
            products.insert().values(
                id=product.id,
                name=product.name,
                description=product.description,
                price=product.price,
                stock=product.stock,
                archived_at=product.archived_at,
                created_at=product.created_at,
                updated_at=product.updated_at,
            )
        )

    def get(self, product_id: str, *, for_update: bool = False) -> Product | None:
        query = sa.select(*_PRODUCT_COLUMNS).where(products.c.id == product_id)
        if for_update:
            query = query.with_for_update()
        row = self._db.execute(query).first()
        return None if row is None else _product(row)

    def active_by_ids(self, product_ids: Sequence[str]) -> list[Product]:
        query = (
            sa.select(*_PRODUCT_COLUMNS)
            .where(products.c.id.in_(list(product_ids)), products.c.archived_at.is_(None))
            .order_by(products.c.id)
        )
        return [_product(row) for row in self._db.execute(query)]

    def active_page(self, after_id: str | None, limit: int) -> list[Product]:
        return self.search(SearchFilter(), after_id, limit)

    def search(self, search: SearchFilter, after_id: str | None, limit: int) -> list[Product]:
        """Active products matching every criterion, in id (creation) order, `limit` at most."""
        conditions: list[sa.ColumnElement[bool]] = [products.c.archived_at.is_(None)]
        if after_id is not None:
            conditions.append(products.c.id > after_id)
        if search.min_price is not None:
            conditions.append(products.c.price >= search.min_price)
        if search.max_price is not None:
            conditions.append(products.c.price <= search.max_price)
        if search.in_stock is not None:
            conditions.append(products.c.stock > 0 if search.in_stock else products.c.stock == 0)
        if search.q is not None:
            conditions.append(self._text_matches(search.q))
        query = sa.select(*_PRODUCT_COLUMNS).where(*conditions).order_by(products.c.id)
        return [_product(row) for row in self._db.execute(query.limit(limit))]

    def _text_matches(self, q: str) -> sa.ColumnElement[bool]:
        """Every word of `q` must occur in the name or the description; `q` is only ever bound."""
        words = re.findall(r"\w+", q)
        if not words:
            return sa.false()
        indexed: list[str] = []
        conditions: list[sa.ColumnElement[bool]] = []
        for word in words:
            if self._db.dialect.name == "mysql" and len(word) >= _FULLTEXT_MIN_WORD:
                indexed.append(word)
            else:
                pattern = "%" + _escape_like(word) + "%"
                conditions.append(
                    sa.or_(
                        products.c.name.like(pattern, escape="\\"),
                        products.c.description.like(pattern, escape="\\"),
                    )
                )
        if indexed:
            # Boolean mode: "+word*" requires a word that starts with it. The words are \w+
            # only, so no search operator can come from the client.
            terms = " ".join(f"+{word}*" for word in indexed)
            matches = mysql.match(products.c.name, products.c.description, against=terms)
            conditions.append(matches.in_boolean_mode())
        return sa.and_(*conditions)

    def update(self, product: Product) -> None:
        self._db.execute(
            products.update()
            .where(products.c.id == product.id)
            .values(
                name=product.name,
                description=product.description,
                price=product.price,
                stock=product.stock,
                updated_at=product.updated_at,
            )
        )

    def archive(self, product_id: str, now: datetime) -> None:
        self._db.execute(
            products.update()
            .where(products.c.id == product_id, products.c.archived_at.is_(None))
            .values(archived_at=now, updated_at=now)
        )

    def stock_of(self, product_id: str) -> int | None:
        stock = self._db.execute(
            sa.select(products.c.stock).where(products.c.id == product_id)
        ).scalar_one_or_none()
        return None if stock is None else int(stock)

    def take_stock(self, product_id: str, quantity: int) -> bool:
        """Never read-modify-write: the row changes only if enough stock is there."""
        result = self._db.execute(
            products.update()
            .where(
                products.c.id == product_id,
                products.c.archived_at.is_(None),
                products.c.stock >= quantity,
            )
            .values(stock=products.c.stock - quantity)
        )
        return result.rowcount == 1

    def lock_stock(self, product_ids: Sequence[str]) -> dict[str, StockLevel]:
        """Locks the rows in ascending id order, the one order every batch takes them in."""
        rows = self._db.execute(
            _lock_stock_statement(len(product_ids)), _id_values(sorted(product_ids))
        )
        return {
            row.id: StockLevel(
                row.id, row.name, Decimal(row.price), int(row.stock), bool(row.archived)
            )
            for row in rows
        }

    def take_stock_of_each(self, quantities: dict[str, int]) -> int:
        """One statement for the whole batch; returns how many rows had enough and changed."""
        result = self._db.execute(
            _take_stock_statement(len(quantities)), _stock_change_parameters(quantities)
        )
        return int(result.rowcount)

    def return_stock_of_each(self, quantities: dict[str, int]) -> None:
        if not quantities:
            return
        self._db.execute(
            _return_stock_statement(len(quantities)), _stock_change_parameters(quantities)
        )


class ReservationRepository:
    def __init__(self, connection: Connection) -> None:
        self._db = connection

    def add(self, reservation_id: str, lines: Sequence[ReservationLine], now: datetime) -> None:
        """Raises IntegrityError when any (reservation, product) line already exists."""
        self.add_each({reservation_id: lines}, now)

    def add_each(self, lines_of: Mapping[str, Sequence[ReservationLine]], now: datetime) -> None:
        """Several reservations' lines in one statement; one existing line refuses them all."""
        self._db.execute(
            _INSERT_RESERVATION_LINE,
            [
                {
                    "reservation_id": reservation_id,
                    "product_id": line.product_id,
                    "quantity": line.quantity,
                    "state": line.state,
                    "price": line.price,
                    "name": line.name,
                    "created_at": now,
                    "updated_at": now,
                }
                for reservation_id, lines in lines_of.items()
                for line in lines
            ],
        )

    def lines(self, reservation_id: str, *, for_update: bool = False) -> list[ReservationLine]:
        query = _RESERVATION_LINES_FOR_UPDATE if for_update else _RESERVATION_LINES
        return [
            ReservationLine(*row)
            for row in self._db.execute(query, {"reservation_id": reservation_id})
        ]

    def line(
        self, reservation_id: str, product_id: str, *, for_update: bool = False
    ) -> ReservationLine | None:
        query = sa.select(
            reservations.c.product_id, reservations.c.quantity, reservations.c.state
        ).where(
            reservations.c.reservation_id == reservation_id,
            reservations.c.product_id == product_id,
        )
        if for_update:
            query = query.with_for_update()
        row = self._db.execute(query).first()
        return None if row is None else ReservationLine(*row)

    def mark_released(
        self, reservation_id: str, now: datetime, *, product_id: str | None = None
    ) -> None:
        """Every held line of the reservation, or only the one of `product_id`."""
        if product_id is None:
            self._db.execute(_RELEASE_HELD, {"of_reservation": reservation_id, "now": now})
        else:
            self._db.execute(
                _RELEASE_HELD_LINE,
                {"of_reservation": reservation_id, "of_product": product_id, "now": now},
            )


# The statements every reservation and release runs, built once (see _lock_stock_statement).
_INSERT_RESERVATION_LINE = reservations.insert()
_RESERVATION_LINES = (
    sa.select(
        reservations.c.product_id,
        reservations.c.quantity,
        reservations.c.state,
        reservations.c.price,
        reservations.c.name,
    )
    .where(reservations.c.reservation_id == sa.bindparam("reservation_id"))
    .order_by(reservations.c.product_id)
)
_RESERVATION_LINES_FOR_UPDATE = _RESERVATION_LINES.with_for_update()
_RELEASE_HELD = (
    reservations.update()
    .where(
        reservations.c.reservation_id == sa.bindparam("of_reservation"),
        reservations.c.state == HELD,
    )
    .values(state=RELEASED, updated_at=sa.bindparam("now"))
)
_RELEASE_HELD_LINE = _RELEASE_HELD.where(reservations.c.product_id == sa.bindparam("of_product"))


def _stock_change(items: int) -> tuple[list[sa.BindParameter[str]], sa.Case[int]]:
    """`id IN (:id_0, ...)` and `CASE WHEN id = :id_0 THEN :quantity_0 ... END` for a batch."""
    ids = _id_parameters(items)
    quantities: list[sa.BindParameter[int]] = [sa.bindparam(f"quantity_{i}") for i in range(items)]
    return ids, sa.case(*((products.c.id == i, q) for i, q in zip(ids, quantities, strict=True)))


# One statement per batch size (at most the API's item limit), built once and reused, so
# SQLAlchemy only binds values; building the CASE anew each time cost more than running it.
@functools.cache
def _lock_stock_statement(items: int) -> sa.Select[tuple[str, str, Decimal, int, bool]]:
    """The first statement of every batch reservation: only the columns it needs."""
    return (
        sa.select(
            products.c.id,
            products.c.name,
            products.c.price,
            products.c.stock,
            products.c.archived_at.is_not(None).label("archived"),
        )
        .where(products.c.id.in_(_id_parameters(items)))
        .order_by(products.c.id)
        .with_for_update()
    )


@functools.cache
def _take_stock_statement(items: int) -> sa.Update:
    ids, change = _stock_change(items)
    return (
        products.update()
        .where(products.c.id.in_(ids), products.c.archived_at.is_(None), products.c.stock >= change)
        .values(stock=products.c.stock - change)
    )


@functools.cache
def _return_stock_statement(items: int) -> sa.Update:
    ids, change = _stock_change(items)
    return products.update().where(products.c.id.in_(ids)).values(stock=products.c.stock + change)


def _id_parameters(items: int) -> list[sa.BindParameter[str]]:
    return [sa.bindparam(f"id_{index}") for index in range(items)]


def _id_values(product_ids: Sequence[str]) -> dict[str, object]:
    return {f"id_{index}": product_id for index, product_id in enumerate(product_ids)}


def _stock_change_parameters(quantities: dict[str, int]) -> dict[str, object]:
    ordered = sorted(quantities)
    return {
        **_id_values(ordered),
        **{f"quantity_{index}": quantities[pid] for index, pid in enumerate(ordered)},
    }


def _escape_like(text: str) -> str:
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
