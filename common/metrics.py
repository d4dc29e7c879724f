"""Prometheus request metrics; aggregated across gunicorn workers when multiprocess mode is on."""

from __future__ import annotations

import os
import time

from flask import Flask, Response, g, request
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Histogram,
    generate_latest,
    multiprocess,
)

REQUESTS = Counter(
    "http_requests_total", "HTTP requests served.", ["service", "method", "route", "status"]
)
LATENCY = Histogram(
    "http_request_duration_seconds",
    "Time to serve an HTTP request.",
    ["service", "method", "route", "status"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0),
)

# How much concurrent work shares one call or one commit (see common.batching): near 1 means
# the service is quiet, or has too few threads in a worker for its orders to meet.
BATCH_SIZE = Histogram(
    "shop_batch_size",
    "Calls sent together as one batch.",
    ["batch"],
    buckets=(1, 2, 4, 8, 16, 32, 64),
)


# Labels hold only values the service chose: a label per invented method or unmatched path
# would let any client grow the metric files and /metrics without bound.
KNOWN_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
OTHER = "other"


def request_labels(service_name: str, status_code: int) -> tuple[str, str, str, str]:
    # The rule, not the path: one series per route, not one per product id.
    route = request.url_rule.rule if request.url_rule else OTHER
    method = request.method if request.method in KNOWN_METHODS else OTHER
    return service_name, method, route, str(status_code)


def install_metrics(app: Flask, service_name: str) -> None:
    @app.before_request
    def _start_timer() -> None:
        g.request_started = time.perf_counter()

    @app.after_request
    def _observe(response: Response) -> Response:
        started = g.get("request_started")
        if started is not None:
            labels = request_labels(service_name, response.status_code)
            REQUESTS.labels(*labels).inc()
            LATENCY.labels(*labels).observe(time.perf_counter() - started)
        return response

    app.add_url_rule("/metrics", "metrics", _metrics_view)


def _metrics_view() -> Response:
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
        return Response(generate_latest(registry), mimetype=CONTENT_TYPE_LATEST)
    return Response(generate_latest(), mimetype=CONTENT_TYPE_LATEST)
