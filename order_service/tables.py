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
    # A copy of the address the order ships to, as JSON (the API's shippingAddress); NULL
    # without one. Copied, so later edits of the address book change no order.
    sa.Column("shipping_address", sa.Text(), nullable=True),
    # When an unpaid order's time to be paid runs out; NULL once it is paid or cancelled.
    sa.Column("expires_at", UtcDateTime(), nullable=True),
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
    # The product's name when ordered; NULL only on items ordered before names were kept.
    sa.Column("name", sa.String(200), nullable=True),
)

order_attempts = sa.Table(
    "order_attempts",
    metadata,
    sa.Column("id", sa.String(36), primary_key=True),
    sa.Column("user_id", sa.String(36), nullable=False),
    # Whose order it would be (an admin may order for another user): the user whose unpaid
    # orders the attempt counts among while it is in flight or abandoned.
    sa.Column("orderer_id", sa.String(36), nullable=False),
    sa.Column("idempotency_key", sa.String(255), nullable=True),
    sa.Column("request_hash", sa.String(64), nullable=False),
    sa.Column("state", sa.String(16), nullable=False),
    sa.Column("order_id", sa.String(36), nullable=True),
    sa.Column("created_at", UtcDateTime(), nullable=False),
    sa.Column("updated_at", UtcDateTime(), nullable=False),
)

# Each user's unpaid orders: PENDING orders plus attempts still in flight or abandoned (their
# stock may be held), kept in the same transactions as those change; MAX_PENDING_ORDERS caps it.
pending_orders = sa.Table(
    "pending_orders",
    metadata,
    sa.Column("user_id", sa.String(36), primary_key=True),
    sa.Column("count", sa.Integer(), nullable=False),
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
