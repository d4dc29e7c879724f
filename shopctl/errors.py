"""Each failure shopctl expects becomes one line on stderr and a non-zero exit, not a traceback."""

from __future__ import annotations

import click
import requests
import sqlalchemy.exc
from botocore.exceptions import BotoCoreError, ClientError, EndpointConnectionError

from common.config import InvalidConfiguration


class ShopctlError(click.ClickException):
    """A message for the person at the terminal; click prints it as `Error: ...`, exit 1."""


class Unreachable(ShopctlError):
    exit_code = 2


def explain(exc: BaseException, *, sqs_endpoint: str | None = None) -> ShopctlError | None:
    """The one-line error for an exception from the outside world, or None if unexpected."""
    if isinstance(exc, ShopctlError):
        return exc
    if isinstance(exc, InvalidConfiguration):
        return ShopctlError(str(exc))
    where = sqs_endpoint or "AWS SQS"
    if isinstance(exc, EndpointConnectionError):
        where = _origin(str(exc.kwargs.get("endpoint_url", where)))
        return Unreachable(f"cannot reach SQS at {where} (is `make run` running?)")
    if isinstance(exc, ClientError):
        error = exc.response.get("Error", {})
        code = error.get("Code", "")
        if "NonExistentQueue" in code or "QueueDoesNotExist" in code:
            return ShopctlError(f"SQS at {where}: queue not found ({error.get('Message', code)})")
        return ShopctlError(f"SQS at {where} refused: {code} {error.get('Message', '')}".strip())
    if isinstance(exc, BotoCoreError):
        return Unreachable(f"SQS at {where}: {exc}")
    if isinstance(exc, requests.ConnectionError | requests.Timeout):
        url = exc.request.url if exc.request is not None else "the service"
        return Unreachable(f"cannot reach {_origin(str(url))} (is `make run` running?)")
    if isinstance(exc, requests.RequestException):
        return ShopctlError(f"HTTP request failed: {exc}")
    if isinstance(exc, sqlalchemy.exc.OperationalError | sqlalchemy.exc.ProgrammingError):
        return ShopctlError(f"database error: {str(exc.orig).splitlines()[0]}")
    if isinstance(exc, sqlalchemy.exc.ArgumentError):
        return ShopctlError(f"bad database URL: {exc}")
    return None


def _origin(url: str) -> str:
    scheme, _, rest = url.partition("://")
    return f"{scheme}://{rest.split('/', 1)[0]}" if rest else url
