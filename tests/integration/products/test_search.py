"""GET /products/search: the same answers on SQLite and MySQL, for words of any length.

Every test runs once per backend (`each_backend`, tests/conftest.py). Each one's products
carry a word of their own (`tag`), and every query names it, so results are exactly ours.
"""

from __future__ import annotations

import contextlib
import re
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
import sqlalchemy as sa
from flask import Flask
from flask.testing import FlaskClient

from tests.integration.products.conftest import ADMIN, assert_problem


@pytest.fixture
def client(product_app_on_each_backend: Flask) -> FlaskClient:
    """Overrides the suite's client, so `create_product` writes to this backend too."""
    return product_app_on_each_backend.test_client()


@pytest.fixture
def tag() -> str:
    return "tag" + uuid.uuid4().hex[:10]


def search(client: FlaskClient, **params: object) -> list[str]:
    response = client.get("/api/v1/products/search", query_string=params)
    assert response.status_code == 200, response.get_data(as_text=True)
    return [item["name"] for item in response.get_json()["items"]]


def all_pages(client: FlaskClient, **params: object) -> list[str]:
    seen: list[str] = []
    cursor = None
    while True:
        query = {**params, **({"cursor": cursor} if cursor else {})}
        body = client.get("/api/v1/products/search", query_string=query).get_json()
        seen += [item["name"] for item in body["items"]]
        cursor = body["nextCursor"]
        if not cursor:
            return seen


class TestWords:
    def test_a_word_of_the_name_or_the_description_matches(self, client, create_product, tag):
        create_product(name=f"Red {tag} mug", description="ceramic")
        create_product(name="Plain cup", description=f"goes with the {tag} set")
        create_product(name="Unrelated", description="nothing")
        assert search(client, q=tag) == [f"Red {tag} mug", "Plain cup"]

    def test_every_word_must_match(self, client, create_product, tag):
        create_product(name=f"Wireless {tag} keyboard", description="with USB receiver")
        create_product(name=f"Wired {tag} keyboard", description="cable")
        assert search(client, q=f"{tag} keyboard usb") == [f"Wireless {tag} keyboard"]
        assert search(client, q=f"{tag} keyboard") == [
            f"Wireless {tag} keyboard",
            f"Wired {tag} keyboard",
        ]
        assert search(client, q=f"{tag} keyboard mouse") == []

    @pytest.mark.parametrize("q", ["tv", "s", "TV", "l", "li", "4", "4k", "x"])
    def test_short_words_match_the_start_of_a_word(self, client, create_product, tag, q):
        create_product(name=f"{tag} TV 4K stand", description="for the living room, x 2")
        assert search(client, q=f"{tag} {q}") == [f"{tag} TV 4K stand"]

    @pytest.mark.parametrize("q", ["wal", "walnu", "walnut", "w", "de"])
    def test_a_prefix_of_a_word_matches(self, client, create_product, tag, q):
        create_product(name=f"{tag} Walnut desk")
        assert search(client, q=f"{tag} {q}") == [f"{tag} Walnut desk"]

    @pytest.mark.parametrize("q", ["alnut", "lnut", "nut", "al", "u", "esk", "k", "walnuts"])
    def test_the_inside_or_end_of_a_word_never_matches(self, client, create_product, tag, q):
        create_product(name=f"{tag} Walnut desk", description="Solid wood")
        assert search(client, q=f"{tag} {q}") == []

    @pytest.mark.parametrize(
        ("name", "q", "found"),
        [
            ("walnut-desk", "desk", True),
            ("walnut-desk", "walnut-desk", True),
            ("Walnut desk", "walnut-desk", True),
            ("Walnut desk", "walnut.desk!", True),
            ("Discount 50%", "50%", True),
            ("Discount 50%", "50", True),
            ("Discount 50%", "0", False),
            ("Discount 50%", "%", True),
            ("a_b", "a_b", True),
            ("a_b", "a", True),
            ("a_b", "b", False),
            ("a_b", "a b", False),
            ("a b", "a_b", False),
        ],
    )
    def test_anything_but_letters_digits_and_underscore_separates_words(
        self, client, create_product, tag, name, q, found
    ):
        create_product(name=f"{tag} {name}")
        assert search(client, q=f"{tag} {q}") == ([f"{tag} {name}"] if found else [])

    @pytest.mark.parametrize(
        ("q", "found"),
        [
            ("w_lnut", ["w_lnut_x"]),  # "_" is part of a word, never "any character"
            ("_alnut", []),
            ("w%", ["Walnut", "w_lnut_x"]),  # "%" separates: this is the word "w"
            ("%alnut", []),  # the word "alnut", which begins no word
            ("w\\%", ["Walnut", "w_lnut_x"]),
            ("w*", ["Walnut", "w_lnut_x"]),
            ("[w]alnut", []),  # the words "w" and "alnut"
        ],
    )
    def test_like_and_search_syntax_in_q_is_literal(self, client, create_product, tag, q, found):
        create_product(name=f"{tag} Walnut")
        create_product(name=f"{tag} w_lnut_x")
        assert search(client, q=f"{tag} {q}") == [f"{tag} {name}" for name in found]

    @pytest.mark.parametrize(
        "q",
        [
            "' OR 1=1 --",
            '"); DROP TABLE products; --',
            "+foo -bar*",
            "@@@ x",
        ],
    )
    def test_q_is_data_never_sql(self, client, create_product, tag, q):
        create_product(name=f"{tag} item")
        assert search(client, q=f"{tag} {q}") == []
        assert search(client, q=tag) == [f"{tag} item"]


class TestCaseAndUnicode:
    @pytest.mark.parametrize(
        ("name", "q"),
        [
            ("Walnut", "WALNUT"),
            ("WALNUT", "walnut"),
            ("Straße", "STRASSE"),
            ("Straße", "strass"),
            ("STRASSE", "straße"),
            ("ΣΟΦΟΣ", "σοφος"),
            ("Ǆemal", "ǆ"),
            ("Crème", "CRÈME"),
            ("\uff34\uff36", "tv"),  # full-width TV
            ("ﬁle", "fil"),  # a ligature
            ("Cafe\u0301", "café"),  # decomposed in the product, composed in q
            ("Café", "cafe\u0301"),  # and the other way round
            ("東京タワー", "東京"),
            ("Müller", "MÜL"),
        ],
    )
    def test_case_is_ignored_in_every_script(self, client, create_product, tag, name, q):
        create_product(name=f"{tag} {name}")
        assert search(client, q=f"{tag} {q}") == [f"{tag} {name}"]

    @pytest.mark.parametrize(
        ("name", "q"),
        [
            ("Café", "cafe"),
            ("Cafe", "café"),
            ("Müller", "muller"),
            ("naïve", "naive"),
            ("東京タワー", "タワー"),  # one word: there is nothing between them to separate
        ],
    )
    def test_accents_count_and_no_collation_blurs_them(self, client, create_product, tag, name, q):
        create_product(name=f"{tag} {name}")
        assert search(client, q=f"{tag} {q}") == []

    def test_a_word_longer_than_the_index_keeps_is_found_by_its_start(
        self, client, create_product, tag
    ):
        long_word = "x" * 70
        create_product(name=f"{tag} {long_word}")
        assert search(client, q=f"{tag} {'X' * 64}") == [f"{tag} {long_word}"]
        assert search(client, q=f"{tag} xxx") == [f"{tag} {long_word}"]


class TestFiltersAndPaging:
    def test_prices_and_stock_filter(self, client, create_product, tag):
        create_product(name=f"{tag} cheap", price="5.00", stock=0)
        create_product(name=f"{tag} middle", price="10.00", stock=3)
        create_product(name=f"{tag} dear", price="20.00", stock=1)
        assert search(client, q=tag, minPrice="10") == [f"{tag} middle", f"{tag} dear"]
        assert search(client, q=tag, maxPrice="10.00") == [f"{tag} cheap", f"{tag} middle"]
        assert search(client, q=tag, minPrice="6", maxPrice="19.99") == [f"{tag} middle"]
        assert search(client, q=tag, inStock="true") == [f"{tag} middle", f"{tag} dear"]
        assert search(client, q=tag, inStock="false") == [f"{tag} cheap"]
        assert search(client, q=tag, minPrice="30") == []

    def test_archived_products_are_not_found(self, client, create_product, tag):
        kept = create_product(name=f"{tag} kept lamp")
        gone = create_product(name=f"{tag} gone lamp")
        assert client.delete(f"/api/v1/products/{gone['id']}", headers=ADMIN).status_code == 204
        assert search(client, q=f"{tag} lamp") == [kept["name"]]
        assert search(client, q=f"{tag} gone") == []

    def test_pages_follow_a_cursor_and_stay_exact_under_inserts(self, client, create_product, tag):
        names = [create_product(name=f"{tag} shelf {i}")["name"] for i in range(5)]
        create_product(name=f"{tag} table")  # matches the tag, not "sh"
        first = client.get(
            "/api/v1/products/search", query_string={"q": f"{tag} sh", "limit": 2}
        ).get_json()
        assert [item["name"] for item in first["items"]] == names[:2]
        added = [create_product(name=f"{tag} shelf {i}")["name"] for i in range(5, 7)]
        rest = all_pages(client, q=f"{tag} sh", limit=2, cursor=first["nextCursor"])
        assert rest == names[2:] + added

    def test_without_q_it_lists_active_products(self, client, create_product, tag):
        product = create_product(name=f"{tag} listed")
        assert product["name"] in all_pages(client, limit=100)


class TestEdits:
    def test_a_patched_name_is_found_by_its_new_words_only(self, client, create_product, tag):
        product = create_product(name=f"{tag} Walnut desk", description="sturdy")
        response = client.patch(
            f"/api/v1/products/{product['id']}", json={"name": f"{tag} Oak desk"}, headers=ADMIN
        )
        assert response.status_code == 200
        assert search(client, q=f"{tag} walnut") == []
        assert search(client, q=f"{tag} oak") == [f"{tag} Oak desk"]
        assert search(client, q=f"{tag} sturdy desk") == [f"{tag} Oak desk"]

    def test_a_replaced_description_is_found_by_its_new_words_only(
        self, client, create_product, tag
    ):
        product = create_product(name=f"{tag} lamp", description="brass")
        payload = {"name": f"{tag} lamp", "description": "copper", "price": "1.00", "stock": 1}
        response = client.put(f"/api/v1/products/{product['id']}", json=payload, headers=ADMIN)
        assert response.status_code == 200
        assert search(client, q=f"{tag} brass") == []
        assert search(client, q=f"{tag} copper") == [f"{tag} lamp"]

    def test_a_price_change_keeps_the_product_found(self, client, create_product, tag):
        product = create_product(name=f"{tag} chair")
        response = client.patch(
            f"/api/v1/products/{product['id']}", json={"price": "3.00"}, headers=ADMIN
        )
        assert response.status_code == 200
        assert search(client, q=f"{tag} ch") == [f"{tag} chair"]


class TestBounds:
    @pytest.mark.parametrize(
        "q",
        [
            "",
            "%",
            "-- !",
            "   ",
            "\\",
            " ".join(f"w{i}" for i in range(11)),
            "x" * 65,
            "ß" * 33,  # 66 characters once folded
            "x" * 201,
        ],
    )
    def test_a_q_the_search_cannot_answer_is_422(self, client, q):
        body = assert_problem(client.get("/api/v1/products/search", query_string={"q": q}), 422)
        assert [error["field"] for error in body["errors"]] == ["q"]

    def test_the_largest_q_accepted_is_answered(self, client, create_product, tag):
        create_product(name=f"{tag} {'y' * 64}")
        words = [tag, "y" * 64, *(f"y{'y' * i}" for i in range(8))]
        assert search(client, q=" ".join(words)) == [f"{tag} {'y' * 64}"]


class TestPlan:
    """What issue 20's millions of products need: a one-word search reads the term index in
    id order and stops after a page; the database neither scans the products nor sorts."""

    def test_a_search_reads_the_terms_in_order_and_sorts_nothing(
        self, product_app_on_each_backend, client, create_product, tag
    ):
        create_product(name=f"{tag} first")
        create_product(name=f"{tag} second")
        engine = product_app_on_each_backend.extensions["database"].engine
        with _statements_on(engine) as statements:
            first = client.get("/api/v1/products/search", query_string={"q": tag, "limit": 1})
            search(client, q=tag, limit=1, cursor=first.get_json()["nextCursor"])
            search(client, q=f"{tag} sec")
        searches = [s for s in statements if "JOIN products" in s[0]]
        assert len(searches) == 3
        with engine.connect() as connection:
            for statement, parameters in searches:
                plan = _plan(connection, statement, parameters)
                assert plan[0].startswith("driving by PRIMARY"), plan
                assert any(step.startswith("products by PRIMARY") for step in plan), plan
                assert all(" by " in step and " by None" not in step for step in plan), plan
                assert not any("sort" in step or "TEMP B-TREE" in step for step in plan), plan


@contextlib.contextmanager
def _statements_on(engine: sa.Engine) -> Iterator[list[tuple[str, Any]]]:
    statements: list[tuple[str, Any]] = []

    def capture(_conn, _cursor, statement, parameters, _context, _executemany) -> None:
        statements.append((statement, parameters))

    sa.event.listen(engine, "before_cursor_execute", capture)
    try:
        yield statements
    finally:
        sa.event.remove(engine, "before_cursor_execute", capture)


def _plan(connection: sa.Connection, statement: str, parameters: Any) -> list[str]:
    """Each step as "<table> by <index>" (plus MySQL's Extra), in the order the database runs."""
    if connection.dialect.name == "mysql":
        explained = connection.exec_driver_sql("EXPLAIN " + statement, parameters).mappings()
        return [f"{row['table']} by {row['key']}; {row['Extra']}" for row in explained]
    steps = []
    for detail in connection.exec_driver_sql("EXPLAIN QUERY PLAN " + statement, parameters).scalars(
        3
    ):
        if match := re.match(r"SEARCH (\w+) USING (?:COVERING )?(?:INDEX )?(.+?) \(", detail):
            table, index = match.groups()
            steps.append(f"{table} by {'PRIMARY' if 'autoindex' in index else index}")
        else:
            steps.append(detail)
    return steps
