"""Revision 0003 indexes the products a database already holds, on SQLite and MySQL alike."""

from __future__ import annotations

from datetime import UTC, datetime

import sqlalchemy as sa
from alembic import command
from flask.testing import FlaskClient

from common.ids import new_id
from common.migrations import alembic_config
from product_service.app import MIGRATIONS_DIR
from tests.integration.products.conftest import new_product_app

# More than one batch of the backfill (500), and not a multiple of it.
ACTIVE = 1203


def _insert_products(url: str) -> None:
    now = datetime(2026, 12, 1, tzinfo=UTC)
    rows: list[dict[str, object]] = [
        {"name": f"Walnut shelf {n}", "description": "Solid wood", "archived_at": None}
        for n in range(ACTIVE)
    ]
    rows.append({"name": "Walnut stool", "description": "Café crème", "archived_at": now})
    rows.append({"name": "Oak stool", "description": "Crème brûlée", "archived_at": None})
    engine = sa.create_engine(url)
    with engine.begin() as connection:
        connection.execute(
            sa.text(
                "INSERT INTO products (id, name, description, price, stock, archived_at, "
                "created_at, updated_at) VALUES (:id, :name, :description, 1.00, 1, "
                ":archived_at, :now, :now)"
            ),
            [{**row, "id": new_id(), "now": now} for row in rows],
        )
    engine.dispose()


def _names_found(url: str, *queries: str) -> list[list[str]]:
    """Each query's names over all pages, asked of the product service on `url`."""
    app = new_product_app(database_url=url)
    client = app.test_client()
    try:
        return [_all_pages(client, q) for q in queries]
    finally:
        app.extensions["database"].engine.dispose()


def _all_pages(client: FlaskClient, q: str) -> list[str]:
    names: list[str] = []
    cursor = None
    while True:
        query = {"q": q, "limit": 100, **({"cursor": cursor} if cursor else {})}
        body = client.get("/api/v1/products/search", query_string=query).get_json()
        names += [item["name"] for item in body["items"]]
        cursor = body["nextCursor"]
        if not cursor:
            return names


def _fulltext_indexes(url: str) -> list[str]:
    engine = sa.create_engine(url)
    with engine.connect() as connection:
        names = [
            str(row.Key_name)
            for row in connection.execute(sa.text("SHOW INDEX FROM products"))
            if row.Index_type == "FULLTEXT"
        ]
    engine.dispose()
    return names


def test_0003_indexes_existing_products_in_batches(each_backend, databases_of):
    url = databases_of(each_backend).create("products_0003")
    config = alembic_config(url, MIGRATIONS_DIR)
    command.upgrade(config, "0002")
    _insert_products(url)

    command.upgrade(config, "0003")

    shelves, shelf_120, stools, creme = _names_found(url, "walnut sh", "shelf 120", "st", "CRÈ")
    assert shelves == [f"Walnut shelf {n}" for n in range(ACTIVE)]
    assert shelf_120 == ["Walnut shelf 120", *(f"Walnut shelf {n}" for n in range(1200, ACTIVE))]
    assert stools == ["Oak stool"]  # the archived stool is not indexed
    assert creme == ["Oak stool"]
    if each_backend == "mysql":
        assert _fulltext_indexes(url) == []


def test_0003_downgrades_to_the_fulltext_index(each_backend, databases_of):
    url = databases_of(each_backend).create("products_0003_down")
    config = alembic_config(url, MIGRATIONS_DIR)
    command.upgrade(config, "0003")
    command.downgrade(config, "0002")
    engine = sa.create_engine(url)
    assert "product_search_terms" not in sa.inspect(engine).get_table_names()
    engine.dispose()
    if each_backend == "mysql":
        assert _fulltext_indexes(url) == ["ft_products_text", "ft_products_text"]
