import sys

import click

from devstack import stack


@click.group()
def cli() -> None:
    """Run Shop locally."""


@cli.command()
def run() -> None:
    """Start every service, the relay and a local SQS endpoint (what `make run` does)."""
    sys.exit(stack.run())


cli()
