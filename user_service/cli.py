"""`python -m user_service ...`: migrations, accounts and keys from the command line."""

from __future__ import annotations

from pathlib import Path

import click

from common.cli import service_cli
from common.db import Database, utcnow
from user_service.app import MIGRATIONS_DIR
from user_service.login import login_throttle
from user_service.passwords import Passwords
from user_service.service import UserService
from user_service.settings import UserSettings
from user_service.tokens import write_private_key


def _ensure_configured_accounts() -> None:
    settings = UserSettings()
    service = _service(settings)
    for username, password, role in settings.configured_accounts():
        service.ensure_account(username, password, role)
        click.echo(f"user_service: {role} account {username!r} ready")


cli = service_cli(
    "user_service",
    lambda: UserSettings().database_url,
    MIGRATIONS_DIR,
    after_migrating=_ensure_configured_accounts,
)


@cli.command("ensure-accounts")
def ensure_accounts() -> None:
    """Create or update the admin and service accounts named by ADMIN_* and SERVICE_*."""
    _ensure_configured_accounts()


@cli.command("create-user")
@click.option("--username", required=True)
@click.option("--password", required=True, prompt=True, hide_input=True)
@click.option("--role", type=click.Choice(["admin", "service", "customer"]), default="admin")
def create_user(username: str, password: str, role: str) -> None:
    """Create (or reset the password and role of) an account."""
    user = _service(UserSettings()).ensure_account(username, password, role)
    click.echo(f"user_service: {role} account {username!r} ready ({user.id})")


@cli.command("prune-login-throttles")
def prune_login_throttles() -> None:
    """Delete every login throttle whose window has ended. Logins already prune a few as
    they open new windows; this clears a backlog at once (e.g. from a cron job)."""
    settings = UserSettings()
    throttle = login_throttle(Database.from_url(settings.database_url), settings)
    deleted = throttle.prune_all(utcnow())
    click.echo(f"user_service: deleted {deleted} expired login throttles")


@cli.command("generate-key")
@click.argument("path", type=click.Path(path_type=Path))
def generate_key(path: Path) -> None:
    """Write a new RS256 private key to PATH, unless one is already there."""
    created = write_private_key(path)
    click.echo(f"user_service: {'created' if created else 'kept existing'} signing key {path}")


def _service(settings: UserSettings) -> UserService:
    return UserService(Database.from_url(settings.database_url), Passwords(settings))
