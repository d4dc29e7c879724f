"""The rows `make bench-scale` loads: a catalogue and years of orders, generated, not fetched.

Pure: no database here, so the rules that keep the rows consistent (every order's items,
attempt and owner's unpaid count; every product's search terms as the service computes them)
are tested on their own. Rows come as tuples in the column order of `*_COLUMNS`, each chunk in
primary-key order (ids are UUIDv7 of increasing times), so InnoDB appends instead of splitting.
"""

from __future__ import annotations

import itertools
import json
import random
import uuid
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal

from product_service.search_words import index_terms


def _words(text: str) -> tuple[str, ...]:
    return tuple(text.split())


# Words of a catalogue: a product's name is a brand, a colour or finish, a material and a
# kind of thing; its description draws from these and from the general words, the common
# ones far more often (Zipf), as real text does. So a one-word search for "chair" or "with"
# matches many products and one for a brand a few hundred.
KINDS = _words(
    "chair table lamp sofa desk shelf rug mirror clock vase bowl mug plate glass kettle pan "
    "pot knife board basket blanket pillow curtain towel jacket shirt sweater scarf hat boots "
    "sneakers backpack wallet belt watch headphones speaker keyboard mouse monitor charger "
    "cable bottle tent lantern bicycle helmet racket ball puzzle notebook pen stool bench "
    "cabinet dresser wardrobe bed mattress duvet sheet candle frame planter"
)
FINISHES = _words(
    "black white grey red blue green yellow orange pink purple brown beige navy teal olive "
    "matte glossy brushed polished rustic vintage modern classic minimalist compact foldable "
    "portable wireless waterproof lightweight heavy large small slim round square oval"
)
MATERIALS = _words(
    "oak walnut pine bamboo steel aluminium brass copper ceramic porcelain stoneware glass "
    "linen cotton wool leather suede silk velvet denim canvas nylon polyester rubber marble "
    "granite concrete rattan wicker cork felt acrylic"
)
GENERAL = _words(
    "with and for the a of in made from durable easy to clean care design everyday use home "
    "office kitchen living room bedroom outdoor travel gift perfect quality soft comfortable "
    "strong stable sturdy elegant simple practical handmade crafted finish natural recycled "
    "sustainable eco friendly premium set pack piece includes fits most size sizes colour "
    "available machine washable dishwasher safe oven warranty year years guarantee assembly "
    "required tools included dimensions weight capacity holds up stores storage space saving "
    "light dark warm cool fresh style styled look feel touch texture pattern striped checked "
    "plain printed embroidered woven knitted stitched reinforced edges corners base legs top "
    "surface handle handles lid cover zip pocket pockets strap straps adjustable removable "
    "replaceable battery hours charge fast quick smart control app compatible standard"
)
_SYLLABLES = _words("ka lo ver tes sin mar dal ben ro vik na tor el sa mi un fa gre hol ast")
BRANDS = 400
DESCRIPTION_WORDS = (8, 16)
# Prices of the catalogue, in cents.
PRICE_CENTS = (199, 99_999)
ARCHIVED_SHARE = 0.02
OUT_OF_STOCK_SHARE = 0.05

# Of the orders: the newest share may still be unpaid (the rest were paid or cancelled long
# ago); unpaid ones never expire during the bench (a payment deadline far ahead).
RECENT_SHARE = 0.01
PENDING_SHARE_OF_RECENT = 0.5
CANCELLED_SHARE = 0.2
CANCEL_REASONS = ("customer", "payment_timeout")
# Below MAX_PENDING_ORDERS (100) by far: a bench shopper's own load must never reach the cap
# because of what was loaded.
MAX_LOADED_PENDING_PER_SHOPPER = 3
MAX_LOADED_PENDING_PER_USER = 10
PENDING_DEADLINE = timedelta(days=30)
# Outbox rows older than the relay's retention (OUTBOX_RETENTION_HOURS, 168) would only be
# pruned by the worker during the bench, so only the last days' orders keep theirs, sent.
OUTBOX_KEPT = timedelta(days=6)
ITEMS_PER_ORDER = (1, 3)
QUANTITY = (1, 3)

PRODUCT_COLUMNS = (
    "id",
    "name",
    "description",
    "price",
    "stock",
    "archived_at",
    "created_at",
    "updated_at",
)
TERM_COLUMNS = ("term", "product_id")
ORDER_COLUMNS = (
    "id",
    "user_id",
    "status",
    "total_amount",
    "reservation_id",
    "cancel_reason",
    "expires_at",
    "created_at",
    "updated_at",
)
ITEM_COLUMNS = ("order_id", "product_id", "quantity", "price", "name")
ATTEMPT_COLUMNS = (
    "id",
    "user_id",
    "orderer_id",
    "idempotency_key",
    "request_hash",
    "state",
    "order_id",
    "created_at",
    "updated_at",
)
OUTBOX_COLUMNS = ("id", "event_type", "order_id", "payload", "created_at", "sent_at")
PENDING_COLUMNS = ("user_id", "count")

Row = tuple[object, ...]
PRODUCT_SEED = 1


def uuid7_at(ms: int, rng: random.Random) -> str:
    """A UUIDv7 of the given Unix time in milliseconds, its other bits from `rng`."""
    value = (ms << 80) | (0x7 << 76) | (rng.getrandbits(12) << 64) | (0b10 << 62)
    return str(uuid.UUID(int=value | rng.getrandbits(62)))


def first_id_at(ms: int) -> str:
    """The smallest UUIDv7 of that millisecond: every id made then or later sorts after it."""
    return str(uuid.UUID(int=(ms << 80) | (0x7 << 76) | (0b10 << 62)))


def _moment(ms: int) -> datetime:
    """Naive UTC, as the services store times."""
    return datetime.fromtimestamp(ms / 1000, UTC).replace(tzinfo=None)


def _spread(count: int, start_ms: int, end_ms: int, rng: random.Random) -> Iterator[int]:
    """`count` strictly increasing milliseconds between start and end."""
    step = max((end_ms - start_ms) // max(count, 1), 1)
    for index in range(count):
        yield start_ms + index * step + rng.randrange(step)


@dataclass(frozen=True)
class Vocabulary:
    brands: tuple[str, ...]
    words: tuple[str, ...]
    cumulative_weights: tuple[float, ...]

    @classmethod
    def build(cls, seed: int) -> Vocabulary:
        rng = random.Random(seed)
        brands: set[str] = set()
        while len(brands) < BRANDS:
            brands.add("".join(rng.choices(_SYLLABLES, k=rng.randint(2, 3))).capitalize())
        words = tuple(dict.fromkeys([*GENERAL, *KINDS, *FINISHES, *MATERIALS]))
        weights = itertools.accumulate(1 / rank for rank in range(1, len(words) + 1))
        return cls(tuple(sorted(brands)), words, tuple(weights))

    def name(self, rng: random.Random) -> str:
        parts = (rng.choice(self.brands), rng.choice(FINISHES), rng.choice(MATERIALS))
        return " ".join((*parts, rng.choice(KINDS))).title()

    def description(self, rng: random.Random) -> str:
        count = rng.randint(*DESCRIPTION_WORDS)
        text = " ".join(rng.choices(self.words, cum_weights=self.cumulative_weights, k=count))
        return text.capitalize() + "."


@dataclass
class Catalogue:
    """What orders need of each loaded product, by position: id, name, price."""

    ids: list[str] = field(default_factory=list)
    names: list[str] = field(default_factory=list)
    prices: list[Decimal] = field(default_factory=list)


@dataclass(frozen=True)
class ProductChunk:
    products: list[Row]
    # Sorted by (term, product_id), the table's primary key.
    terms: list[Row]


def product_chunks(
    count: int,
    *,
    catalogue: Catalogue,
    start_ms: int,
    end_ms: int,
    chunk_size: int,
    seed: int = PRODUCT_SEED,
) -> Iterator[ProductChunk]:
    """`count` products created between start and end, `chunk_size` at a time, each recorded
    in `catalogue` for the orders; archived ones have no search terms, as in the service."""
    rng = random.Random(seed)
    vocabulary = Vocabulary.build(seed)
    moments = _spread(count, start_ms, end_ms, rng)
    while True:
        chunk = ProductChunk([], [])
        for ms in itertools.islice(moments, chunk_size):
            _add_product(chunk, catalogue, vocabulary, ms, rng)
        if not chunk.products:
            return
        chunk.terms.sort()
        yield chunk


def _add_product(
    chunk: ProductChunk,
    catalogue: Catalogue,
    vocabulary: Vocabulary,
    ms: int,
    rng: random.Random,
) -> None:
    product_id, created = uuid7_at(ms, rng), _moment(ms)
    name, description = vocabulary.name(rng), vocabulary.description(rng)
    price = Decimal(rng.randint(*PRICE_CENTS)) / 100
    stock = 0 if rng.random() < OUT_OF_STOCK_SHARE else rng.randint(1, 500)
    archived = rng.random() < ARCHIVED_SHARE
    archived_at = created + timedelta(days=rng.randint(1, 300)) if archived else None
    chunk.products.append(
        (product_id, name, description, price, stock, archived_at, created, archived_at or created)
    )
    if not archived:
        # The service's own rule (repository._search_terms_of): every prefix of every word.
        chunk.terms.extend((term, product_id) for term in index_terms((name, description)))
    catalogue.ids.append(product_id)
    catalogue.names.append(name)
    catalogue.prices.append(price)


@dataclass(frozen=True)
class OrderChunk:
    orders: list[Row]
    items: list[Row]
    attempts: list[Row]
    outbox: list[Row]


@dataclass(frozen=True)
class OrderPlan:
    """Orders placed between start and end (Unix ms), `now_ms` being the load's time: about
    `per_shopper` of them for each shopper, the rest spread over `other_users` customers."""

    count: int
    shoppers: Sequence[str]
    per_shopper: int
    other_users: int
    start_ms: int
    end_ms: int
    now_ms: int
    seed: int = 2


@dataclass
class _Owners:
    shoppers: Sequence[str]
    others: list[str]
    shopper_share: float
    pending: Counter[str] = field(default_factory=Counter)

    def pick(self, rng: random.Random) -> str:
        if self.shoppers and rng.random() < self.shopper_share:
            return rng.choice(self.shoppers)
        return rng.choice(self.others)

    def may_hold_another_pending(self, user_id: str) -> bool:
        limit = MAX_LOADED_PENDING_PER_SHOPPER
        if user_id not in self.shoppers:
            limit = MAX_LOADED_PENDING_PER_USER
        return self.pending[user_id] < limit


def order_chunks(
    plan: OrderPlan, catalogue: Catalogue, *, chunk_size: int
) -> tuple[Iterator[OrderChunk], Counter[str]]:
    """The chunks of orders, and each customer's count of PENDING orders among them (final
    once the chunks are exhausted): the `pending_orders` rows, one per customer."""
    rng = random.Random(plan.seed)
    others = [uuid7_at(plan.start_ms - rng.randrange(10**10), rng) for _ in range(plan.other_users)]
    owners = _Owners(
        list(plan.shoppers), others, len(plan.shoppers) * plan.per_shopper / max(plan.count, 1)
    )
    for user_id in [*plan.shoppers, *others]:
        owners.pending[user_id] += 0  # every customer gets a counter, as a first order does
    return _order_chunks(plan, catalogue, owners, rng, chunk_size), owners.pending


def _order_chunks(
    plan: OrderPlan,
    catalogue: Catalogue,
    owners: _Owners,
    rng: random.Random,
    chunk_size: int,
) -> Iterator[OrderChunk]:
    recent_from = plan.count - int(plan.count * RECENT_SHARE)
    outbox_from_ms = plan.now_ms - OUTBOX_KEPT // timedelta(milliseconds=1)
    moments = enumerate(_spread(plan.count, plan.start_ms, plan.end_ms, rng))
    while True:
        chunk = OrderChunk([], [], [], [])
        for index, ms in itertools.islice(moments, chunk_size):
            status = _status(index >= recent_from, rng)
            user_id = owners.pick(rng)
            if status == "PENDING":
                if owners.may_hold_another_pending(user_id):
                    owners.pending[user_id] += 1
                else:
                    status = "PAID"
            _add_order(chunk, catalogue, plan, ms, user_id, status, ms >= outbox_from_ms, rng)
        if not chunk.orders:
            return
        chunk.outbox.sort()
        yield chunk


def _status(recent: bool, rng: random.Random) -> str:
    if recent and rng.random() < PENDING_SHARE_OF_RECENT:
        return "PENDING"
    return "CANCELLED" if rng.random() < CANCELLED_SHARE else "PAID"


def _add_order(
    chunk: OrderChunk,
    catalogue: Catalogue,
    plan: OrderPlan,
    ms: int,
    user_id: str,
    status: str,
    with_events: bool,
    rng: random.Random,
) -> None:
    attempt_id, order_id = uuid7_at(ms, rng), uuid7_at(ms, rng)
    created = _moment(ms)
    settled = created + timedelta(minutes=rng.randint(1, 30))
    positions = rng.sample(range(len(catalogue.ids)), rng.randint(*ITEMS_PER_ORDER))
    lines = [
        (
            order_id,
            catalogue.ids[p],
            rng.randint(*QUANTITY),
            catalogue.prices[p],
            catalogue.names[p],
        )
        for p in sorted(positions, key=catalogue.ids.__getitem__)
    ]
    total = sum((Decimal(quantity) * price for _, _, quantity, price, _ in lines), Decimal(0))
    pending = status == "PENDING"
    chunk.orders.append(
        (
            order_id,
            user_id,
            status,
            total,
            attempt_id,
            rng.choice(CANCEL_REASONS) if status == "CANCELLED" else None,
            _moment(plan.now_ms) + PENDING_DEADLINE if pending else None,
            created,
            created if pending else settled,
        )
    )
    chunk.items.extend(lines)
    chunk.attempts.append(
        (
            attempt_id,
            user_id,
            user_id,
            str(uuid.UUID(int=rng.getrandbits(128), version=4)),
            f"{rng.getrandbits(256):064x}",
            "completed",
            order_id,
            created,
            created,
        )
    )
    if with_events:
        chunk.outbox.extend(_events(order_id, status, total, created, settled, rng))


def _events(
    order_id: str,
    status: str,
    total: Decimal,
    created: datetime,
    settled: datetime,
    rng: random.Random,
) -> list[Row]:
    """The order's outbox rows, every one already sent by the relay."""
    happened = [("order_created", created)]
    if status != "PENDING":
        happened.append(("order_paid" if status == "PAID" else "order_cancelled", settled))
    rows: list[Row] = []
    for event_type, at in happened:
        ms = int(at.replace(tzinfo=UTC).timestamp() * 1000)
        payload = json.dumps(
            {"eventType": event_type, "orderId": order_id, "totalAmount": str(total)}
        )
        rows.append(
            (uuid7_at(ms, rng), event_type, order_id, payload, at, at + timedelta(seconds=0.1))
        )
    return rows
