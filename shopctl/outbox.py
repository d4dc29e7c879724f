"""`shopctl outbox status`: what the order service's relay still has to send."""

from __future__ import annotations

import datetime as dt
import os
from dataclasses import dataclass
from pathlib import Path

import sqlalchemy as sa

from shopctl.errors import ShopctlError

DEFAULT_ORDER_DATABASE_URL = "sqlite:///var/order_service.db"


@dataclass(frozen=True)
class OutboxReport:
    pending: int
    oldest_pending_at: dt.datetime | None
    last_sent_at: dt.datetime | None


def order_database_url(explicit: str | None = None) -> str:
    return explicit or os.environ.get("ORDER_DATABASE_URL") or DEFAULT_ORDER_DATABASE_URL


def read_outbox(url: str) -> OutboxReport:
    """Reads the `outbox` table (ORDER_INTERFACE.md) directly: works with no service running."""
    parsed = sa.make_url(url)
    sqlite_file = parsed.database if parsed.get_backend_name() == "sqlite" else None
    if sqlite_file and not Path(sqlite_file).is_file():
        raise ShopctlError(
            f"no order database at {sqlite_file} (has `make run` started the order "
            "service? or set ORDER_DATABASE_URL / --database-url)"
        )
    engine = sa.create_engine(url, connect_args=_connect_args(parsed))
    try:
        with engine.connect() as connection:
            pending, oldest = connection.execute(
                sa.text("SELECT COUNT(*), MIN(created_at) FROM outbox WHERE sent_at IS NULL")
            ).one()
            last_sent = connection.execute(sa.text("SELECT MAX(sent_at) FROM outbox")).scalar()
    finally:
        engine.dispose()
    return OutboxReport(int(pending), _datetime(oldest), _datetime(last_sent))


def _connect_args(url: sa.URL) -> dict[str, object]:
    return {} if url.get_backend_name() == "sqlite" else {"connect_timeout": 3}


def _datetime(value: object) -> dt.datetime | None:
    if value is None:
        return None
    if isinstance(value, dt.datetime):
        return value
    # SQLite hands back text for an aggregate over a DATETIME column.
    return dt.datetime.fromisoformat(str(value))
