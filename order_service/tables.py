"""The order database's tables: the one place the schema is spelled in code (the migrations
spell it for the database)."""

from __future__ import annotations

import sqlalchemy as sa

from common.db import UtcDateTime

metadata = sa.MetaData()

orders = sa.Table(
    "orders",
    metadata,
    sa.Column("id", sa.String(36), primary_key=True),
    sa.Column("user_id", sa.String(36), nullable=False),
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("total_amount", sa.Numeric(12, 2), nullable=False),
    sa.Column("reservation_id", sa.String(36), nullable=False),
    # Set (and committed) when a cancel begins, before its stock is released; see service.py.
    sa.Column("cancel_reason", sa.String(16), nullable=True),
    sa.Column("created_at", UtcDateTime(), nullable=False),
    sa.Column("updated_at", UtcDateTime(), nullable=False),
)

order_items = sa.Table(
    "order_items",
    metadata,
    sa.Column("order_id", sa.String(36), primary_key=True),
    sa.Column("product_id", sa.String(36), primary_key=True),
    sa.Column("quantity", sa.Integer(), nullable=False),
    sa.Column("price", sa.Numeric(12, 2), nullable=False),
)

order_attempts = sa.Table(
    "order_attempts",
    metadata,
    sa.Column("id", sa.String(36), primary_key=True),
    sa.Column("user_id", sa.String(36), nullable=False),
    sa.Column("idempotency_key", sa.String(255), nullable=True),
    sa.Column("request_hash", sa.String(64), nullable=False),
    sa.Column("state", sa.String(16), nullable=False),
    sa.Column("order_id", sa.String(36), nullable=True),
    sa.Column("created_at", UtcDateTime(), nullable=False),
    sa.Column("updated_at", UtcDateTime(), nullable=False),
)

outbox = sa.Table(
    "outbox",
    metadata,
    sa.Column("id", sa.String(36), primary_key=True),
    sa.Column("event_type", sa.String(32), nullable=False),
    sa.Column("order_id", sa.String(36), nullable=False),
    sa.Column("payload", sa.Text(), nullable=False),
    sa.Column("request_id", sa.String(128), nullable=True),
    sa.Column("created_at", UtcDateTime(), nullable=False),
    sa.Column("sent_at", UtcDateTime(), nullable=True),
    # How many times SQS refused this event; past the limit it is parked and never claimed.
    sa.Column("attempts", sa.Integer(), nullable=False, server_default="0"),
    sa.Column("parked_at", UtcDateTime(), nullable=True),
)
