"""`shopctl`: start, demonstrate and inspect a running Shop.

Every command reads its endpoints from the environment (USER_SERVICE_URL, PRODUCT_SERVICE_URL,
ORDER_SERVICE_URL, SQS_ENDPOINT_URL) with `make run`'s defaults, so it works the same against
the local processes and against docker compose.
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path
from typing import Any

import click

from shopctl import queues
from shopctl.compose_secrets import init_secrets
from shopctl.config import Endpoints, QueueSettings, admin_credentials
from shopctl.errors import ShopctlError, explain
from shopctl.formatting import format_event, format_outbox_status

ENDPOINT_OPTION = click.option(
    "--endpoint",
    metavar="URL",
    help="SQS endpoint (default: $SQS_ENDPOINT_URL, else make run's http://127.0.0.1:4566).",
)


class ShopctlGroup(click.Group):
    """Turns the outside world's failures into one line and a non-zero exit, not a traceback."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except (click.exceptions.Exit, click.ClickException, click.Abort):
            raise
        except KeyboardInterrupt:
            raise click.exceptions.Exit(130) from None
        except Exception as exc:
            explained = explain(exc)
            if explained is not None:
                raise explained from None
            if os.environ.get("SHOPCTL_DEBUG"):
                raise
            raise ShopctlError(
                f"unexpected {type(exc).__name__}: {exc} (SHOPCTL_DEBUG=1 shows the traceback)"
            ) from None


@click.group(cls=ShopctlGroup, context_settings={"help_option_names": ["-h", "--help"]})
def cli() -> None:
    """Developer tools for Shop: start it, walk through it, watch its events."""


@cli.command()
def up() -> None:
    """Start every service, the relay and a local SQS endpoint (what `make run` does)."""
    from devstack import stack

    sys.exit(stack.run())


@cli.command()
@click.option(
    "--events-timeout",
    default=30.0,
    show_default=True,
    help="Seconds to wait at the end for the demo's order events.",
)
@click.option(
    "--expiry-wait",
    default=60.0,
    show_default=True,
    help="The longest the demo waits for its unpaid order to expire (else it says how).",
)
@ENDPOINT_OPTION
def demo(events_timeout: float, expiry_wait: float, endpoint: str | None) -> None:
    """Walk through the whole flow against a running system, printing every exchange.

    Registers a customer, logs in (customer and admin), adds products, searches, places an
    order with an Idempotency-Key twice (201, then 200 with the same order), pays it, places
    and cancels a second one, shows the stock moving, and prints each `order-events` message
    as it arrives. A third order is left unpaid: when the system's ORDER_PAYMENT_TIMEOUT_S
    is short (`ORDER_PAYMENT_TIMEOUT_S=10 make run`) the demo waits for the worker to cancel
    it with reason payment_timeout. It CONSUMES that queue while it runs.
    """
    from shopctl.demo import run_demo

    run_demo(
        Endpoints.from_environment(),
        QueueSettings.from_environment(endpoint),
        admin_credentials(),
        events_timeout_s=events_timeout,
        expiry_wait_s=expiry_wait,
    )


@cli.group()
def events() -> None:
    """The `order-events` queue."""


@events.command("tail")
@click.option("--json", "as_json", is_flag=True, help="One raw JSON message per line.")
@click.option("--count", type=click.IntRange(min=1), help="Stop after this many messages.")
@click.option(
    "--idle-timeout",
    type=click.FloatRange(min=0),
    help="Stop after this many seconds without a message (default: run until Ctrl-C).",
)
@ENDPOINT_OPTION
def events_tail(
    as_json: bool, count: int | None, idle_timeout: float | None, endpoint: str | None
) -> None:
    """Long-poll `order-events` and print each message as it arrives.

    It consumes: each message is deleted once printed (a reader that only peeked would send
    every message to the dead-letter queue after a few receives).
    """
    settings = QueueSettings.from_environment(endpoint)
    client = queues.sqs_client(settings)
    url = queues.queue_url(client, settings.queue)
    click.echo(
        f"tailing {settings.queue} at {settings.endpoint}; consuming: each "
        "message is deleted once printed (Ctrl-C stops)",
        err=True,
    )
    shown = 0
    last_message = time.monotonic()
    wait_s = queues.LONG_POLL_S if idle_timeout is None else max(1, min(5, int(idle_timeout)))
    while count is None or shown < count:
        # Never take more than --count still allows: a taken message is a deleted one.
        wanted = queues.SQS_BATCH if count is None else min(queues.SQS_BATCH, count - shown)
        batch = queues.receive(client, url, wait_s=wait_s, max_messages=wanted)
        for event in batch:
            click.echo(event.as_json() if as_json else format_event(event.body, event.attributes))
        queues.delete(client, url, batch)
        shown += len(batch)
        if batch:
            last_message = time.monotonic()
        elif idle_timeout is not None and time.monotonic() - last_message >= idle_timeout:
            return


@cli.group()
def dlq() -> None:
    """The dead-letter queue `order-events-dlq`."""


@dlq.command("redrive")
@ENDPOINT_OPTION
def dlq_redrive(endpoint: str | None) -> None:
    """Move every message from `order-events-dlq` back to `order-events`."""
    settings = QueueSettings.from_environment(endpoint)
    client = queues.sqs_client(settings)
    source = queues.queue_url(client, settings.dead_letter_queue)
    target = queues.queue_url(client, settings.queue)
    moved = queues.redrive(client, source, target)
    click.echo(f"moved {moved} message(s) from {settings.dead_letter_queue} to {settings.queue}")


@cli.group()
def outbox() -> None:
    """The order service's transactional outbox."""


@outbox.command("status")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@click.option(
    "--database-url",
    metavar="URL",
    help="The order database (default: $ORDER_DATABASE_URL, else make run's SQLite file).",
)
def outbox_status(as_json: bool, database_url: str | None) -> None:
    """Pending events, the oldest pending one, when the relay last sent one, and the events
    parked after SQS refused them too often."""
    # The order service's own code: in the order image (and a checkout), not the others.
    from shopctl.outbox import order_database_url, read_outbox

    report = read_outbox(order_database_url(database_url)).report()
    if as_json:
        click.echo(json.dumps(report))
    else:
        click.echo(format_outbox_status(report))


@cli.group()
def users() -> None:
    """Accounts in the user service's database."""


@users.command("show-admin")
def users_show_admin() -> None:
    """Print the admin login as ADMIN_USERNAME=... and ADMIN_PASSWORD=... lines.

    Read as the user service reads it (ADMIN_USERNAME, ADMIN_PASSWORD or ADMIN_PASSWORD_FILE),
    else from make run's var/credentials.env. With docker compose:
    `docker compose exec user_service shopctl users show-admin`.
    """
    credentials = admin_credentials()
    if credentials is None:
        raise ShopctlError(
            "no admin login here: set ADMIN_USERNAME and ADMIN_PASSWORD(_FILE), or run "
            "`make run` once (it keeps one in var/credentials.env)"
        )
    username, password = credentials
    click.echo(f"ADMIN_USERNAME={username}\nADMIN_PASSWORD={password}")


@cli.group("secrets")
def secrets_group() -> None:
    """docker compose's secrets (the `secrets-init` service)."""


@secrets_group.command("init")
@click.argument("root", type=click.Path(file_okay=False, path_type=Path))
def secrets_init(root: Path) -> None:
    """Make the missing secrets under ROOT (one directory per service); a variable set in the
    environment (compose passes .env's) replaces its secret. Safe to run on every start."""
    report = init_secrets(root, os.environ)
    if any("/db" in name for name in report.replaced):
        click.echo(
            "secrets-init: a database password changed; a database volume made before keeps "
            "the old one (`docker compose down -v` starts over)",
            err=True,
        )
    click.echo(
        f"secrets-init: {report.summary()} in {root}; the admin login: "
        "docker compose exec user_service shopctl users show-admin"
    )


@users.command("create-admin")
@click.option("--username", required=True)
@click.option("--password", prompt=True, hide_input=True, confirmation_prompt=True)
@click.pass_context
def users_create_admin(ctx: click.Context, username: str, password: str) -> None:
    """Create an admin (or reset its password) with the user service's own `create-user`.

    Works on the database at $USER_DATABASE_URL (default: make run's SQLite file).
    """
    from user_service import cli as user_cli

    default_key = Path("var") / "jwt-private.pem"
    if not os.environ.get("JWT_PRIVATE_KEY") and default_key.is_file():
        os.environ.setdefault("JWT_PRIVATE_KEY_FILE", str(default_key))
    ctx.invoke(user_cli.create_user, username=username, password=password, role="admin")


def main() -> None:
    cli(prog_name="shopctl")
