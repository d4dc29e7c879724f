"""`shopctl outbox status`: what the order service's relay still has to send."""

from __future__ import annotations

import os
from pathlib import Path

import sqlalchemy as sa

from common.db import Database
from order_service.outbox import OutboxStatus, outbox_status
from shopctl.errors import ShopctlError

DEFAULT_ORDER_DATABASE_URL = "sqlite:///var/order_service.db"


def order_database_url(explicit: str | None = None) -> str:
    return explicit or os.environ.get("ORDER_DATABASE_URL") or DEFAULT_ORDER_DATABASE_URL


def read_outbox(url: str) -> OutboxStatus:
    """The order service's own query on its database: works with no service running."""
    parsed = sa.make_url(url)
    sqlite_file = parsed.database if parsed.get_backend_name() == "sqlite" else None
    if sqlite_file and not Path(sqlite_file).is_file():
        # SQLite would create an empty file and then fail on the missing table.
        raise ShopctlError(
            f"no order database at {sqlite_file} (has `make run` started the order "
            "service? or set ORDER_DATABASE_URL / --database-url)"
        )
    database = Database.from_url(url, pool_size=1)
    try:
        return outbox_status(database)
    finally:
        database.engine.dispose()
