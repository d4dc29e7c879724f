"""`python -m order_service ...`: migrations, the worker, and a look at the outbox."""

from __future__ import annotations

import json

import click

from common.cli import service_cli
from common.db import Database
from order_service.app import MIGRATIONS_DIR
from order_service.outbox import outbox_status
from order_service.settings import OrderSettings
from order_service.worker import run_worker

cli = service_cli("order_service", lambda: OrderSettings().database_url, MIGRATIONS_DIR)


@cli.command()
def worker() -> None:
    """Relay outbox events to SQS and repair lost attempts, until SIGTERM or Ctrl-C."""
    run_worker()


@cli.command("outbox-status")
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of text.")
def outbox_status_command(as_json: bool) -> None:
    """Events waiting to be relayed, the oldest of them, the last one sent, and parked ones."""
    status = outbox_status(Database.from_url(OrderSettings().database_url))
    report = status.report()
    if as_json:
        click.echo(json.dumps(report))
        return
    for name, value in report.items():
        if name != "parkedEvents":
            click.echo(f"{name:<16} {value if value is not None else '-'}")
    for event in status.first_parked:
        click.echo(f"parked event     {event.event_id} {event.event_type} order {event.order_id}")
