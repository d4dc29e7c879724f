"""`python -m product_service ...`: migrations, and pruning released reservations."""

from __future__ import annotations

import time
from datetime import timedelta

import click

from common.cli import service_cli
from common.db import Database
from common.logs import configure_logging
from common.upkeep import UpkeepStep
from product_service.app import MIGRATIONS_DIR
from product_service.reservation_pruning import prune_released_reservations
from product_service.settings import ProductSettings

cli = service_cli("product_service", lambda: ProductSettings().database_url, MIGRATIONS_DIR)


@cli.command("prune-reservations")
@click.option(
    "--every",
    "every_s",
    type=click.FloatRange(min=1),
    default=None,
    help="Keep running, pruning every this many seconds (`make run`, compose); a failed "
    "round is logged and the next one tries again. Without it: one round.",
)
def prune_reservations(every_s: float | None) -> None:
    """Delete released reservation lines older than RELEASED_RESERVATION_RETENTION_HOURS."""
    settings = ProductSettings()
    retention = timedelta(hours=settings.released_reservation_retention_hours)
    db = Database.from_url(settings.database_url, pool_size=1)
    try:
        if every_s is None:
            _prune_round(db, retention)
            return
        configure_logging("product_pruner", settings.log_level)
        step = UpkeepStep("prune_reservations", every_s, lambda: _prune_round(db, retention))
        while True:
            step.run_if_due(time.monotonic())
            time.sleep(max(0.0, step.due_at - time.monotonic()))
    finally:
        db.dispose()


def _prune_round(db: Database, retention: timedelta) -> None:
    deleted = prune_released_reservations(db, retention=retention)
    click.echo(f"product_service: {deleted} released reservation line(s) pruned")
