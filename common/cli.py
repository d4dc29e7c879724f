"""The commands every service's `python -m <service>` has: `migrate` and `prestart`."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import click

from common.config import InvalidConfiguration
from common.migrations import upgrade_to_head

# sysexits' EX_CONFIG: the image's entrypoint does not retry a start that cannot succeed.
EXIT_CONFIGURATION = 78


class ConfigurationError(click.ClickException):
    exit_code = EXIT_CONFIGURATION


class ServiceGroup(click.Group):
    """A refused setting ends the command with its one line (`Error: ADMIN_PASSWORD ...`),
    not a traceback."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except InvalidConfiguration as exc:
            raise ConfigurationError(str(exc)) from None


def service_cli(
    service: str,
    database_url: Callable[[], str],
    migrations_dir: Path,
    *,
    after_migrating: Callable[[], None] | None = None,
) -> click.Group:
    """A command group with `migrate` and `prestart` (what a container runs before the server:
    migrate, then `after_migrating`); each service adds its own commands to it."""

    def upgrade() -> None:
        upgrade_to_head(database_url(), migrations_dir)
        click.echo(f"{service}: database at head")

    @click.group(
        cls=ServiceGroup, help=f"Operate the {service} (settings come from the environment)."
    )
    def cli() -> None:
        pass

    @cli.command()
    def migrate() -> None:
        """Apply the database migrations (safe to run from several replicas at once)."""
        upgrade()

    @cli.command()
    def prestart() -> None:
        """What a container runs before the server: migrate, then any start-up chores."""
        upgrade()
        if after_migrating is not None:
            after_migrating()

    return cli
