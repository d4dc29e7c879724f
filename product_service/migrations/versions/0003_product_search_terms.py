"""search reads words through a prefix index of its own, the same on every database

MySQL's FULLTEXT index skipped words under three characters, and SQLite (and short words)
matched anywhere inside a word. `product_search_terms` holds every prefix of every folded word
of each active product (product_service.search_words), so "a query word begins a word of the
product" is one equality on its primary key, in id order, on MySQL and SQLite alike. It is
filled here from the products already there, a batch at a time; the FULLTEXT index goes.

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-04
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import mysql

from product_service.search_words import MAX_WORD_LENGTH, index_terms

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

# Products read (and their terms written) per round trip: bounded memory and statements
# whatever the size of the catalog.
_BATCH = 500

_products = sa.table(
    "products",
    sa.column("id", sa.String(36)),
    sa.column("name", sa.String(200)),
    sa.column("description", sa.Text()),
    sa.column("archived_at", sa.DateTime()),
)
_terms = sa.table("product_search_terms", sa.column("term"), sa.column("product_id"))


def upgrade() -> None:
    op.create_table(
        "product_search_terms",
        sa.Column(
            "term",
            sa.String(MAX_WORD_LENGTH).with_variant(
                mysql.VARCHAR(MAX_WORD_LENGTH, charset="utf8mb4", collation="utf8mb4_bin"),
                "mysql",
            ),
            primary_key=True,
        ),
        sa.Column("product_id", sa.String(36), primary_key=True),
        sqlite_with_rowid=False,
    )
    op.create_index("ix_product_search_terms_product", "product_search_terms", ["product_id"])
    _index_existing_products(op.get_bind())
    if op.get_bind().dialect.name == "mysql":
        op.drop_index("ft_products_text", table_name="products")


def _index_existing_products(connection: sa.Connection) -> None:
    after = ""
    while True:
        batch = connection.execute(
            sa.select(_products.c.id, _products.c.name, _products.c.description)
            .where(_products.c.id > after, _products.c.archived_at.is_(None))
            .order_by(_products.c.id)
            .limit(_BATCH)
        ).all()
        if not batch:
            return
        rows = [
            {"term": term, "product_id": product_id}
            for product_id, name, description in batch
            for term in sorted(index_terms((name, description)))
        ]
        if rows:
            connection.execute(_terms.insert(), rows)
        after = batch[-1].id


def downgrade() -> None:
    if op.get_bind().dialect.name == "mysql":
        # As revision 0001 built it: without the stopword list.
        op.execute("SET SESSION innodb_ft_enable_stopword = OFF")
        op.execute("CREATE FULLTEXT INDEX ft_products_text ON products (name, description)")
        op.execute("SET SESSION innodb_ft_enable_stopword = ON")
    op.drop_table("product_search_terms")
