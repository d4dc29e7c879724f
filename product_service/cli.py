"""`python -m product_service ...`: migrations from the command line."""

from __future__ import annotations

import click

from common.migrations import upgrade_to_head
from product_service.app import MIGRATIONS_DIR
from product_service.settings import ProductSettings


@click.group()
def cli() -> None:
    """Operate the product service (settings come from the environment, as for the server)."""


@cli.command()
def migrate() -> None:
    """Apply the database migrations (safe to run from several replicas at once)."""
    upgrade_to_head(ProductSettings().database_url, MIGRATIONS_DIR)
    click.echo("product_service: database at head")


@cli.command("prestart")
@click.pass_context
def prestart(ctx: click.Context) -> None:
    """What a container runs before the server: migrate."""
    ctx.invoke(migrate)
