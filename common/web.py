"""The Flask skeleton every service starts from: request ids, logs, errors, health, metrics."""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from importlib import resources
from pathlib import Path

import structlog
from flask import Blueprint, Flask, Response, g, jsonify, request, send_from_directory
from flask.json.provider import DefaultJSONProvider
from werkzeug.routing import BaseConverter

from common.config import CommonSettings
from common.errors import ServiceUnavailable, register_error_handlers
from common.ids import CANONICAL_UUID, new_id
from common.inputs import body_left_unread
from common.logs import configure_logging
from common.metrics import install_metrics

REQUEST_ID_HEADER = "X-Request-ID"
# Accept a caller's id only if it is short and harmless to echo into logs and headers.
_SAFE_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")
access_log = structlog.get_logger("shop.access")
log = structlog.get_logger(__name__)

# name -> a callable that raises when that dependency does not answer.
ReadinessChecks = dict[str, Callable[[], None]]


class CanonicalUuidConverter(BaseConverter):
    """`<id:...>` in a route: only a canonical lowercase UUID matches, anything else is 404.

    Matching in the router (not in the view) also keeps `/products/search` from looking like
    `/products/<id>`, so each path advertises exactly its own methods.
    """

    regex = CANONICAL_UUID


class ShopJSONProvider(DefaultJSONProvider):
    sort_keys = False
    ensure_ascii = False


def create_base_app(
    settings: CommonSettings,
    *,
    package: str,
    readiness_checks: ReadinessChecks,
    reported_checks: ReadinessChecks | None = None,
) -> Flask:
    """`reported_checks` are dependencies the service can do without for a while (the order
    service's queue, behind its outbox): readiness reports each as "ok" or "unreachable" under
    its name in the body, and never fails for one."""
    configure_logging(settings.service_name, settings.log_level)
    app = Flask(package)
    app.json = ShopJSONProvider(app)
    app.url_map.converters["id"] = CanonicalUuidConverter
    app.config["MAX_CONTENT_LENGTH"] = settings.max_body_bytes
    _install_request_id(app)
    _close_when_body_unread(app)
    install_metrics(app, settings.service_name)
    register_error_handlers(app)
    app.register_blueprint(_health_blueprint(readiness_checks, reported_checks or {}))
    app.register_blueprint(_openapi_blueprint(package))
    return app


def current_request_id() -> str:
    return str(g.get("request_id") or new_id())


def _install_request_id(app: Flask) -> None:
    @app.before_request
    def _bind_request_id() -> None:
        incoming = request.headers.get(REQUEST_ID_HEADER, "")
        g.request_id = incoming if _SAFE_REQUEST_ID.match(incoming) else new_id()
        g.access_started = time.perf_counter()
        structlog.contextvars.clear_contextvars()
        structlog.contextvars.bind_contextvars(request_id=g.request_id)

    @app.after_request
    def _echo_request_id(response: Response) -> Response:
        response.headers[REQUEST_ID_HEADER] = current_request_id()
        started = g.get("access_started", time.perf_counter())
        access_log.info(
            "request",
            method=request.method,
            path=request.path,
            status=response.status_code,
            duration_ms=round((time.perf_counter() - started) * 1000, 2),
        )
        return response


def _close_when_body_unread(app: Flask) -> None:
    @app.after_request
    def _close_if_unread(response: Response) -> Response:
        # A refusal before the body was read (413, 415, 401...) leaves its bytes on the wire.
        # gunicorn drains at most 64 KiB of them and then drops the connection without a word,
        # so the client's next request on it would fail: say so now instead.
        # (common.gunicorn_conf makes gunicorn honour this header.)
        if body_left_unread():
            response.headers["Connection"] = "close"
        return response


def _health_blueprint(
    readiness_checks: ReadinessChecks, reported_checks: ReadinessChecks
) -> Blueprint:
    health = Blueprint("health", __name__)

    @health.get("/health")
    def liveness() -> Response:
        return jsonify(status="ok")

    @health.get("/health/ready")
    def readiness() -> Response:
        for name, check in readiness_checks.items():
            try:
                check()
            except Exception as exc:
                log.warning("not_ready", dependency=name, error=str(exc))
                raise ServiceUnavailable(f"The {name} does not answer.", retry_after_s=5) from exc
        return jsonify(
            status="ok",
            **{name: _reachable(name, check) for name, check in reported_checks.items()},
        )

    return health


def _reachable(name: str, check: Callable[[], None]) -> str:
    try:
        check()
    except Exception as exc:
        log.warning("dependency_unreachable", dependency=name, error=str(exc))
        return "unreachable"
    return "ok"


def _openapi_blueprint(package: str) -> Blueprint:
    spec = resources.files(package).joinpath("openapi.yaml").read_text(encoding="utf-8")
    docs = Blueprint("openapi", __name__)

    @docs.get("/openapi.yaml")
    def openapi_document() -> Response:
        return Response(spec, mimetype="application/yaml")

    @docs.get("/docs")
    def swagger_ui() -> Response:
        return Response(SWAGGER_UI_PAGE, mimetype="text/html")

    @docs.get("/docs/<path:asset>")
    def swagger_ui_asset(asset: str) -> Response:
        return send_from_directory(SWAGGER_UI_DIST, asset, max_age=3600)

    return docs


# Swagger UI's own dist files, shipped inside a pinned wheel: /docs works offline.
SWAGGER_UI_DIST = Path(str(resources.files("flask_swagger_ui").joinpath("dist")))
# The spec's `servers` name the `make run` ports; the page offers its own origin first, so
# "Try it out" reaches the service that served the page wherever it runs.
SWAGGER_UI_PAGE = """<!DOCTYPE html>
<html lang="en">
<head>
  <meta charset="utf-8">
  <title>Shop API docs</title>
  <link rel="stylesheet" href="docs/swagger-ui.css">
  <link rel="icon" type="image/png" href="docs/favicon-32x32.png">
</head>
<body>
  <div id="swagger-ui"></div>
  <script src="docs/swagger-ui-bundle.js"></script>
  <script>
    var servedHere = false;
    window.ui = SwaggerUIBundle({
      url: "openapi.yaml",
      dom_id: "#swagger-ui",
      deepLinking: true,
      persistAuthorization: true,
      displayRequestDuration: true,
      onComplete: function () {
        if (servedHere) { return; }
        servedHere = true;
        var spec = window.ui.specSelectors.specJson().toJS();
        var here = { url: window.location.origin, description: "this server" };
        var others = (spec.servers || []).filter(function (s) { return s.url !== here.url; });
        spec.servers = [here].concat(others);
        window.ui.specActions.updateJsonSpec(spec);
        window.ui.oas3Actions.setSelectedServer(here.url);
      }
    });
  </script>
</body>
</html>
"""
