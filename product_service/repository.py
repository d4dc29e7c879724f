"""The product database: tables and every SQL statement the service runs."""

from __future__ import annotations

import functools
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal

import sqlalchemy as sa
from sqlalchemy.dialects import mysql
from sqlalchemy.engine import Connection

from common.db import UtcDateTime
from common.pruning import delete_where
from product_service.search_words import MAX_WORD_LENGTH, index_terms

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

# The search index: one row per (term, product) for every term of `index_terms`, kept in the
# transaction that writes the product's text, and only for products not archived. Terms are
# already folded, so they compare byte for byte: a binary collation on MySQL, SQLite's default.
product_search_terms = sa.Table(
    "product_search_terms",
    metadata,
    sa.Column(
        "term",
        sa.String(MAX_WORD_LENGTH).with_variant(
            mysql.VARCHAR(MAX_WORD_LENGTH, charset="utf8mb4", collation="utf8mb4_bin"), "mysql"
        ),
        primary_key=True,
    ),
    sa.Column("product_id", sa.String(36), primary_key=True),
    sa.Index("ix_product_search_terms_product", "product_id"),
)

HELD, RELEASED = "held", "released"
# Every batch reservation also writes a line for this id: a retried batch collides on it, and
# a release that arrives before its reservation leaves it behind as `released`, so the late
# reservation is refused instead of holding stock that nobody will ever give back.
BATCH_MARKER = "00000000-0000-0000-0000-000000000000"


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
    # Folded query words (search_words.query_words); a product must have a term for each.
    words: tuple[str, ...] = ()
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
        self._add_search_terms(product.id, _search_terms_of(product))

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
        if search.min_price is not None:
            conditions.append(products.c.price >= search.min_price)
        if search.max_price is not None:
            conditions.append(products.c.price <= search.max_price)
        if search.in_stock is not None:
            conditions.append(products.c.stock > 0 if search.in_stock else products.c.stock == 0)
        if search.words:
            words = self._rarest_first(search.words)
            if not words:
                return []
            query, paged_id = _word_search(words)
        else:
            query, paged_id = _LISTING, products.c.id
        if after_id is not None:
            conditions.append(paged_id > after_id)
        query = query.where(*conditions).order_by(paged_id).limit(limit)
        return [_product(row) for row in self._db.execute(query)]

    def _rarest_first(self, words: Sequence[str]) -> list[str]:
        """The words, the one fewest products have first (it drives the search, so a rare
        word after a common one is not looked up for every product); none if one matches
        nothing. Counted up to a bound, so a common word costs no more than a rare one."""
        if len(words) == 1:
            return list(words)
        counts = {
            word: self._db.execute(_BOUNDED_TERM_COUNT, {"term": word}).scalar_one()
            for word in words
        }
        if 0 in counts.values():
            return []
        return sorted(words, key=counts.__getitem__)  # stable: longest first among equals

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
        self._replace_search_terms(product)

    def archive(self, product_id: str, now: datetime) -> None:
        self._db.execute(
            products.update()
            .where(products.c.id == product_id, products.c.archived_at.is_(None))
            .values(archived_at=now, updated_at=now)
        )
        # Archived products never match, so their terms would only be rows to skip.
        self._db.execute(
            product_search_terms.delete().where(product_search_terms.c.product_id == product_id)
        )

    def _replace_search_terms(self, product: Product) -> None:
        """Rewrites the product's terms only when its text changed them (not for a price)."""
        stored = set(
            self._db.execute(
                sa.select(product_search_terms.c.term).where(
                    product_search_terms.c.product_id == product.id
                )
            ).scalars()
        )
        terms = _search_terms_of(product)
        if stored == terms:
            return
        self._db.execute(
            product_search_terms.delete().where(product_search_terms.c.product_id == product.id)
        )
        self._add_search_terms(product.id, terms)

    def _add_search_terms(self, product_id: str, terms: set[str]) -> None:
        if terms:
            self._db.execute(
                product_search_terms.insert(),
                [{"term": term, "product_id": product_id} for term in sorted(terms)],
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
        """In ascending id order, at most a reservation's item limit per statement, so only
        that many statements are ever built (a batch of releases may name many products)."""
        ordered = sorted(quantities)
        for start in range(0, len(ordered), _MAX_PRODUCTS_PER_STATEMENT):
            chunk = {
                pid: quantities[pid] for pid in ordered[start : start + _MAX_PRODUCTS_PER_STATEMENT]
            }
            self._db.execute(_return_stock_statement(len(chunk)), _stock_change_parameters(chunk))


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

    def lines_of(
        self, reservation_ids: Sequence[str], *, for_update: bool = False
    ) -> dict[str, list[ReservationLine]]:
        """The lines of each reservation that has any, locked in (reservation, product) order."""
        query = _LINES_OF_RESERVATIONS_FOR_UPDATE if for_update else _LINES_OF_RESERVATIONS
        found: dict[str, list[ReservationLine]] = {}
        for reservation_id, *line in self._db.execute(
            query, {"reservation_ids": list(reservation_ids)}
        ):
            found.setdefault(reservation_id, []).append(ReservationLine(*line))
        return found

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

    def mark_released_each(self, reservation_ids: Sequence[str], now: datetime) -> None:
        """Every held line of each of the reservations."""
        self._db.execute(
            _RELEASE_HELD_OF_EACH, {"reservation_ids": list(reservation_ids), "now": now}
        )

    def delete_released_before(self, cutoff: datetime, limit: int) -> int:
        """Released lines (and release markers) last touched before `cutoff`, up to `limit`."""
        released_long_ago = sa.and_(
            reservations.c.state == RELEASED, reservations.c.updated_at < cutoff
        )
        return delete_where(self._db, reservations, released_long_ago, limit)


# The statements every reservation and release runs, built once (see _lock_stock_statement).
# A reservation's item limit (the API's): the most products one stock statement names.
_MAX_PRODUCTS_PER_STATEMENT = 100
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
_LINES_OF_RESERVATIONS = (
    sa.select(
        reservations.c.reservation_id,
        reservations.c.product_id,
        reservations.c.quantity,
        reservations.c.state,
        reservations.c.price,
        reservations.c.name,
    )
    .where(reservations.c.reservation_id.in_(sa.bindparam("reservation_ids", expanding=True)))
    .order_by(reservations.c.reservation_id, reservations.c.product_id)
)
_LINES_OF_RESERVATIONS_FOR_UPDATE = _LINES_OF_RESERVATIONS.with_for_update()
_RELEASE_HELD = (
    reservations.update()
    .where(
        reservations.c.reservation_id == sa.bindparam("of_reservation"),
        reservations.c.state == HELD,
    )
    .values(state=RELEASED, updated_at=sa.bindparam("now"))
)
_RELEASE_HELD_OF_EACH = (
    reservations.update()
    .where(
        reservations.c.reservation_id.in_(sa.bindparam("reservation_ids", expanding=True)),
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


def _search_terms_of(product: Product) -> set[str]:
    return set() if product.archived else index_terms((product.name, product.description))


_LISTING = sa.select(*_PRODUCT_COLUMNS)
# Past this many products, which word of a query drives it matters little: each finds a page
# in a few thousand rows at most.
_TERM_COUNT_BOUND = 1000
_BOUNDED_TERM_COUNT = sa.select(sa.func.count()).select_from(
    sa.select(product_search_terms.c.product_id)
    .where(product_search_terms.c.term == sa.bindparam("term"))
    .limit(_TERM_COUNT_BOUND)
    .subquery()
)


def _word_search(
    words: Sequence[str],
) -> tuple[sa.Select[tuple[object, ...]], sa.ColumnElement[str]]:
    """Products that have a term equal to each word, and the id column to page on.

    The first word's rows drive the query, read along the primary key (term, product_id): they
    come in id order already, so the LIMIT stops the read after one page however many
    products match, and the database never sorts. Each other word, then the product, is one
    primary-key lookup per candidate (unique, so the joins never repeat a product)."""
    leading, *others = words
    driving = product_search_terms.alias("driving")
    joined: sa.FromClause = driving
    for index, word in enumerate(others):
        also = product_search_terms.alias(f"also_{index}")
        joined = joined.join(
            also, sa.and_(also.c.term == word, also.c.product_id == driving.c.product_id)
        )
    query = (
        sa.select(*_PRODUCT_COLUMNS)
        .select_from(joined.join(products, products.c.id == driving.c.product_id))
        .where(driving.c.term == leading)
        # The plan above, whatever the statistics say: for a word most products have, MySQL
        # and MariaDB would otherwise scan and sort every product (seconds at 200,000), and
        # for a small catalog join through a buffer that loses the order.
        .prefix_with("STRAIGHT_JOIN", dialect="mysql")
        .with_hint(products, "FORCE INDEX (PRIMARY)", "mysql")
    )
    return query, driving.c.product_id
