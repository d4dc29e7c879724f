"""`python -m product_service ...`: migrations, and pruning released reservations."""

from __future__ import annotations

from datetime import timedelta

import click

from common.cli import service_cli
from common.db import Database
from product_service.app import MIGRATIONS_DIR
from product_service.reservation_pruning import prune_released_reservations
from product_service.settings import ProductSettings

cli = service_cli("product_service", lambda: ProductSettings().database_url, MIGRATIONS_DIR)


@cli.command("prune-reservations")
def prune_reservations() -> None:
    """Delete released reservation lines older than RELEASED_RESERVATION_RETENTION_HOURS."""
    settings = ProductSettings()
    db = Database.from_url(settings.database_url, pool_size=1)
    try:
        retention = timedelta(hours=settings.released_reservation_retention_hours)
        deleted = prune_released_reservations(db, retention=retention)
    finally:
        db.dispose()
    click.echo(f"product_service: {deleted} released reservation line(s) pruned")
