"""`make bench-scale`'s generated rows: consistent with each other and with the services' rules."""

from __future__ import annotations

import random
import uuid
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest

from bench import scale_rows
from bench.bulk import Index, insert_statement, prefetched
from bench.plans import Plan
from bench.scale_load import SHOPPERS, per_shopper
from bench.scale_rows import (
    ATTEMPT_COLUMNS,
    ITEM_COLUMNS,
    ORDER_COLUMNS,
    OUTBOX_COLUMNS,
    PRODUCT_COLUMNS,
    Catalogue,
    OrderPlan,
    first_id_at,
    order_chunks,
    product_chunks,
    uuid7_at,
)
from order_service.tables import orders
from product_service.search_words import index_terms

NOW_MS = 1_765_000_000_000
DAY_MS = 86_400_000


def _catalogue(count: int = 300) -> tuple[Catalogue, list[scale_rows.ProductChunk]]:
    catalogue = Catalogue()
    chunks = list(
        product_chunks(
            count,
            catalogue=catalogue,
            start_ms=NOW_MS - 700 * DAY_MS,
            end_ms=NOW_MS - 400 * DAY_MS,
            chunk_size=70,
        )
    )
    return catalogue, chunks


def _orders(
    count: int = 2000, shoppers: int = 4
) -> tuple[OrderPlan, list[scale_rows.OrderChunk], Counter[str], Catalogue]:
    catalogue, _ = _catalogue()
    plan = OrderPlan(
        count=count,
        shoppers=[f"shopper-{n}" for n in range(shoppers)],
        per_shopper=count // (2 * shoppers),
        other_users=count // 40,
        start_ms=NOW_MS - 365 * DAY_MS,
        end_ms=NOW_MS - DAY_MS // 24,
        now_ms=NOW_MS,
    )
    chunks, pending = order_chunks(plan, catalogue, chunk_size=300)
    return plan, list(chunks), pending, catalogue


def _column(row: tuple[object, ...], columns: tuple[str, ...], name: str) -> object:
    return row[columns.index(name)]


def test_ids_are_uuid7_of_their_millisecond_and_sort_after_its_first_id():
    rng = random.Random(3)
    made = uuid7_at(NOW_MS, rng)
    assert uuid.UUID(made).version == 7
    assert first_id_at(NOW_MS) <= made < first_id_at(NOW_MS + 1)
    assert uuid.UUID(first_id_at(NOW_MS)).version == 7


def test_products_come_in_id_order_with_the_services_search_terms():
    catalogue, chunks = _catalogue()
    rows = [row for chunk in chunks for row in chunk.products]
    ids = [str(_column(row, PRODUCT_COLUMNS, "id")) for row in rows]
    assert len(rows) == 300 and ids == sorted(ids) and ids == catalogue.ids
    for chunk in chunks:
        assert chunk.terms == sorted(chunk.terms)
        for row in chunk.products:
            product_id = _column(row, PRODUCT_COLUMNS, "id")
            terms = {term for term, of in chunk.terms if of == product_id}
            texts = (str(row[1]), str(row[2]))
            archived = _column(row, PRODUCT_COLUMNS, "archived_at") is not None
            # As repository._search_terms_of: archived products have none.
            assert terms == (set() if archived else index_terms(texts))


def test_a_common_word_matches_many_products_and_a_brand_few():
    _, chunks = _catalogue(1000)
    matches = Counter(term for chunk in chunks for term, _ in chunk.terms)
    vocabulary = scale_rows.Vocabulary.build(scale_rows.PRODUCT_SEED)
    assert matches[vocabulary.words[0]] > 500
    assert 0 < matches[vocabulary.brands[0].lower()] < 20


def test_orders_items_and_attempts_agree():
    plan, chunks, _, catalogue = _orders()
    price_of = dict(zip(catalogue.ids, catalogue.prices, strict=True))
    name_of = dict(zip(catalogue.ids, catalogue.names, strict=True))
    all_orders = [row for chunk in chunks for row in chunk.orders]
    assert len(all_orders) == plan.count
    ids = [str(row[0]) for row in all_orders]
    assert ids == sorted(ids) and ids[-1] < first_id_at(plan.end_ms + 1)
    items_of: dict[object, list[tuple[object, ...]]] = {}
    for chunk in chunks:
        for item in chunk.items:
            items_of.setdefault(item[0], []).append(item)
    attempts = {row[0]: row for chunk in chunks for row in chunk.attempts}
    for row in all_orders:
        order_id, user_id = row[0], row[1]
        items = items_of[order_id]
        assert 1 <= len(items) <= 3
        for _, product_id, _, price, name in items:
            assert price == price_of[str(product_id)] and name == name_of[str(product_id)]
        total = sum((Decimal(str(i[2])) * Decimal(str(i[3])) for i in items), Decimal(0))
        assert _column(row, ORDER_COLUMNS, "total_amount") == total
        attempt = attempts[_column(row, ORDER_COLUMNS, "reservation_id")]
        assert _column(attempt, ATTEMPT_COLUMNS, "order_id") == order_id
        assert _column(attempt, ATTEMPT_COLUMNS, "orderer_id") == user_id
        assert _column(attempt, ATTEMPT_COLUMNS, "user_id") == user_id
    assert len(ITEM_COLUMNS) == len(chunks[0].items[0])


def test_unpaid_orders_are_counted_per_customer_and_never_expire_during_the_bench():
    plan, chunks, pending, _ = _orders()
    unpaid = Counter(str(row[1]) for chunk in chunks for row in chunk.orders if row[2] == "PENDING")
    assert sum(unpaid.values()) > 0
    assert {user: n for user, n in pending.items() if n} == dict(unpaid)
    # Every customer has a counter, as one made by their first order.
    owners = {str(row[1]) for chunk in chunks for row in chunk.orders}
    assert owners <= set(pending)
    for shopper in plan.shoppers:
        assert pending[shopper] <= scale_rows.MAX_LOADED_PENDING_PER_SHOPPER
    now = datetime.fromtimestamp(NOW_MS / 1000, UTC).replace(tzinfo=None)
    for chunk in chunks:
        for row in chunk.orders:
            expires_at = _column(row, ORDER_COLUMNS, "expires_at")
            reason = _column(row, ORDER_COLUMNS, "cancel_reason")
            if row[2] == "PENDING":
                assert isinstance(expires_at, datetime) and expires_at > now + timedelta(days=1)
            else:
                assert expires_at is None
            assert (reason is not None) == (row[2] == "CANCELLED")


def test_each_shopper_owns_about_their_share():
    plan, chunks, _, _ = _orders(count=4000)
    owned = Counter(str(row[1]) for chunk in chunks for row in chunk.orders)
    for shopper in plan.shoppers:
        assert plan.per_shopper * 0.7 < owned[shopper] < plan.per_shopper * 1.3


def test_only_recent_orders_keep_their_events_all_sent():
    _, chunks, _, _ = _orders()
    kept_from = datetime.fromtimestamp(NOW_MS / 1000, UTC).replace(tzinfo=None) - (
        scale_rows.OUTBOX_KEPT
    )
    status = {row[0]: row[2] for chunk in chunks for row in chunk.orders}
    created = {
        row[0]: _column(row, ORDER_COLUMNS, "created_at")
        for chunk in chunks
        for row in chunk.orders
    }
    events = Counter[object]()
    for chunk in chunks:
        assert chunk.outbox == sorted(chunk.outbox)
        for row in chunk.outbox:
            assert _column(row, OUTBOX_COLUMNS, "sent_at") is not None
            events[_column(row, OUTBOX_COLUMNS, "order_id")] += 1
    assert events
    for order_id, at in created.items():
        assert isinstance(at, datetime)
        expected = 0 if at < kept_from else 1 if status[order_id] == "PENDING" else 2
        assert events[order_id] == expected


def test_shoppers_share_is_capped_at_half_the_orders():
    assert per_shopper(5_000_000) == 1500
    assert per_shopper(100_000) == 100_000 // (2 * SHOPPERS)


def test_insert_statements_name_only_columns_of_the_table():
    assert insert_statement(orders, ("id", "status")) == (
        "INSERT INTO orders (id, status) VALUES (%s, %s)"
    )
    with pytest.raises(ValueError, match="no column"):
        insert_statement(orders, ("id", "colour"))


def test_prefetched_yields_every_chunk_then_raises_what_making_them_raised():
    assert list(prefetched(iter(range(5)))) == [0, 1, 2, 3, 4]

    def failing() -> Iterator[int]:
        yield 1
        raise RuntimeError("no more")

    chunks = prefetched(failing())
    assert next(chunks) == 1
    with pytest.raises(RuntimeError, match="no more"):
        next(chunks)


def test_a_plan_warns_of_full_scans_and_sorts():
    indexed = Plan("SELECT 1", {}, [{"table": "orders", "type": "ref", "Extra": "Using where"}])
    assert indexed.warnings == []
    sorted_scan = Plan(
        "SELECT 1", {}, [{"table": "orders", "type": "ALL", "Extra": "Using filesort"}]
    )
    assert sorted_scan.warnings == ["full scan of orders", "Using filesort on orders"]


def test_an_index_is_built_again_as_the_catalogue_describes_it():
    by_key = Index("order_attempts", "uq_key", True, (("user_id", None), ("key", 8)))
    assert by_key.definition() == "ADD UNIQUE INDEX `uq_key` (`user_id`, `key`(8))"
    by_user = Index("orders", "ix_user", False, (("user_id", None), ("id", None)))
    assert by_user.definition() == "ADD INDEX `ix_user` (`user_id`, `id`)"
