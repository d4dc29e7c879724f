"""Errors as RFC 9457 problem+json, raised as typed exceptions and rendered in one place."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import structlog
from flask import Flask, Response, json
from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeout
from werkzeug.exceptions import HTTPException

from common.db import is_retryable_conflict

PROBLEM_MEDIA_TYPE = "application/problem+json"
log = structlog.get_logger(__name__)


class Problem(Exception):
    """A failure the client is told about. Subclasses fix the status and title."""

    status = 500
    title = "Internal Server Error"

    def __init__(
        self,
        detail: str,
        *,
        errors: list[dict[str, str]] | None = None,
        extra: Mapping[str, Any] | None = None,
        headers: Mapping[str, str] | None = None,
        type_: str = "about:blank",
    ) -> None:
        super().__init__(detail)
        self.detail = detail
        self.errors = errors
        self.extra = dict(extra or {})
        self.headers = dict(headers or {})
        self.type = type_


class BadRequest(Problem):
    status, title = 400, "Bad Request"


class Unauthorized(Problem):
    status, title = 401, "Unauthorized"

    def __init__(self, detail: str = "A valid bearer token is required.", **kw: Any) -> None:
        kw.setdefault("headers", {"WWW-Authenticate": 'Bearer realm="shop"'})
        super().__init__(detail, **kw)


class Forbidden(Problem):
    status, title = 403, "Forbidden"


class NotFound(Problem):
    status, title = 404, "Not Found"


class Conflict(Problem):
    status, title = 409, "Conflict"


class PreconditionFailed(Problem):
    status, title = 412, "Precondition Failed"


class UnsupportedMediaType(Problem):
    status, title = 415, "Unsupported Media Type"


class Unprocessable(Problem):
    status, title = 422, "Unprocessable Content"


class TooManyRequests(Problem):
    status, title = 429, "Too Many Requests"

    def __init__(self, detail: str, *, retry_after_s: int, **kw: Any) -> None:
        kw.setdefault("headers", {"Retry-After": str(max(1, retry_after_s))})
        super().__init__(detail, **kw)


class ServiceUnavailable(Problem):
    status, title = 503, "Service Unavailable"

    def __init__(self, detail: str, *, retry_after_s: int = 1, **kw: Any) -> None:
        kw.setdefault("headers", {"Retry-After": str(max(1, retry_after_s))})
        super().__init__(detail, **kw)


def field_error(field: str, message: str) -> dict[str, str]:
    return {"field": field, "message": message}


def problem_body(
    status: int,
    title: str,
    detail: str,
    *,
    type_: str = "about:blank",
    errors: list[dict[str, str]] | None = None,
    extra: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """The problem+json document: what a response carries, or one result of a batch."""
    body: dict[str, Any] = {"type": type_, "title": title, "status": status, "detail": detail}
    if errors is not None:
        body["errors"] = errors
    body.update(extra or {})
    return body


def problem_of(exc: Problem) -> dict[str, Any]:
    return problem_body(
        exc.status, exc.title, exc.detail, type_=exc.type, errors=exc.errors, extra=exc.extra
    )


def problem_response(
    status: int, title: str, detail: str, *, headers: Mapping[str, str] | None = None
) -> Response:
    return _problem_json(problem_body(status, title, detail), status, headers)


def _problem_json(body: dict[str, Any], status: int, headers: Mapping[str, str] | None) -> Response:
    response = Response(json.dumps(body), status=status, mimetype=PROBLEM_MEDIA_TYPE)
    response.headers.update(headers or {})
    return response


def _render_problem(exc: Problem) -> Response:
    return _problem_json(problem_of(exc), exc.status, exc.headers)


def _render_http_exception(exc: HTTPException) -> Response:
    status = exc.code or 500
    headers = {k: v for k, v in exc.get_headers() if k.lower() in {"allow", "retry-after"}}
    return problem_response(status, exc.name, exc.description or exc.name, headers=headers)


def _render_database_down(exc: DBAPIError) -> Response:
    if is_retryable_conflict(exc):
        # A deadlock or lock wait that outlasted retry_on_deadlock: busy, not broken.
        log.warning("database_contention", error=str(exc.orig))
        return _render_problem(ServiceUnavailable("The database is busy; try again shortly."))
    # Only a lost or refused connection is "down"; any other database error is our bug.
    if not (exc.connection_invalidated or _is_connection_error(exc)):
        return _render_unexpected(exc)
    log.warning("database_unavailable", error=str(exc.orig))
    return _render_problem(ServiceUnavailable("The database is unavailable; try again shortly."))


def _render_pool_exhausted(exc: PoolTimeout) -> Response:
    # More requests wanted the database at once than the pool holds, for longer than its
    # timeout: the service is overloaded, and nothing of the request was written.
    log.warning("database_pool_exhausted", error=str(exc))
    return _render_problem(ServiceUnavailable("The service is busy; try again shortly."))


def _is_connection_error(exc: DBAPIError) -> bool:
    if isinstance(exc, InterfaceError):
        return True
    if not isinstance(exc, OperationalError):
        return False
    code = exc.orig.args[0] if exc.orig is not None and exc.orig.args else None
    # MySQL client errors 2002-2013: cannot connect, server gone away, lost connection.
    # SQLite reports a locked or unopenable file, which is equally transient for the client.
    if not isinstance(code, int):
        return True
    return 2000 <= code < 2100 or code in _SERVER_FULL


# The server refuses another connection: too many in all (1040), or for this account (1203,
# 1226). The database is unavailable to this request, as if it were down.
_SERVER_FULL = frozenset({1040, 1203, 1226})


def _render_unexpected(exc: Exception) -> Response:
    log.exception("unhandled_error", error_type=type(exc).__name__)
    return problem_response(500, "Internal Server Error", "An unexpected error occurred.")


def register_error_handlers(app: Flask) -> None:
    app.register_error_handler(Problem, _render_problem)
    app.register_error_handler(HTTPException, _render_http_exception)
    app.register_error_handler(DBAPIError, _render_database_down)
    app.register_error_handler(PoolTimeout, _render_pool_exhausted)
    app.register_error_handler(Exception, _render_unexpected)
