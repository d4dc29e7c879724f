"""Gunicorn settings shared by every service image and `make run` (override by environment)."""

from __future__ import annotations

import gc
import json
import os
import tempfile
from typing import Any

from gunicorn import glogging
from gunicorn import util as gunicorn_util
from gunicorn.http import wsgi as gunicorn_wsgi

# Workers are separate processes; without a shared directory each would count only its own
# requests and /metrics would answer for whichever worker served it. prometheus_client reads
# this variable when first imported, so it is set before anything imports it.
os.environ.setdefault("PROMETHEUS_MULTIPROC_DIR", tempfile.mkdtemp(prefix="shop-metrics-"))

bind = os.environ.get("BIND", "0.0.0.0:8080")
workers = int(os.environ.get("WEB_CONCURRENCY", "2"))
# Threads let one worker overlap the I/O waits of outbound HTTP and database calls; the product
# service, whose requests are short transactions, runs 4 per worker (less GIL contention). The
# order service is deployed as 1 gevent worker: its requests mostly wait (on the product
# service, on a shared batch, on a commit), and greenlets wait without the GIL handoffs of
# threads, while every order in flight shares the same batches (`make bench`: ~20% less CPU
# per order than 1 worker of 16 threads). Its connections are bounded by `worker_connections`
# (gunicorn's default, 1000) and its database work by the connection pool.
worker_class = os.environ.get("GUNICORN_WORKER_CLASS", "gthread")
threads = int(os.environ.get("GUNICORN_THREADS", "8"))
timeout = int(os.environ.get("GUNICORN_TIMEOUT", "30"))
graceful_timeout = 20
keepalive = 5
# Several gunicorns share a host in `make run` and tests; one fixed control socket path would
# make them collide, and nothing here uses it.
control_socket_disable = True


class _OwnAccessLogLogger(glogging.Logger):  # type: ignore[misc]  # gunicorn is untyped
    """Our own JSON access line (with the request id) replaces gunicorn's text one. Without
    this, gunicorn builds its access atoms for every request (logconfig_dict turns its access
    log on) only for the line to be dropped."""

    def access(self, resp: Any, req: Any, environ: Any, request_time: Any) -> None:
        pass


accesslog = None
logger_class = _OwnAccessLogLogger
# gunicorn's maximum, as nginx's default: longer request lines are refused with 414 before
# the application sees them (every URL the API defines fits with room to spare).
limit_request_line = 8190


def _write_problem(sock: Any, status_int: int, reason: str, mesg: str) -> None:
    """What gunicorn answers itself (a request line too long, malformed headers) is
    problem+json like every other refusal, instead of its HTML page."""
    body = json.dumps(
        {"type": "about:blank", "title": reason, "status": status_int, "detail": mesg}
    ).encode()
    head = (
        f"HTTP/1.1 {status_int} {reason}\r\nConnection: close\r\n"
        f"Content-Type: application/problem+json\r\nContent-Length: {len(body)}\r\n\r\n"
    )
    gunicorn_util.write_nonblock(sock, head.encode("latin1") + body)


# The workers call `util.write_error` through the module, so this replaces it everywhere.
gunicorn_util.write_error = _write_problem
_process_headers = gunicorn_wsgi.Response.process_headers


def _process_headers_closing_on_request(response: Any, headers: list[tuple[str, str]]) -> None:
    """gunicorn drops an application's hop-by-hop headers, `Connection: close` included. The
    services send it when a request's body was left unread (common.web), so the connection must
    really close: gunicorn then says `Connection: close` itself and closes after the response."""
    if any(
        name.lower() == "connection" and value.strip().lower() == "close" for name, value in headers
    ):
        response.force_close()
    _process_headers(response, headers)


gunicorn_wsgi.Response.process_headers = _process_headers_closing_on_request
logconfig_dict: dict[str, Any] = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {
        "json": {
            "format": '{"timestamp": "%(asctime)s", "level": "%(levelname)s", '
            '"logger": "%(name)s", "event": "%(message)s"}',
        }
    },
    "handlers": {
        "console": {
            "class": "logging.StreamHandler",
            "formatter": "json",
            "stream": "ext://sys.stdout",
        }
    },
    "loggers": {"gunicorn.error": {"handlers": ["console"], "level": "INFO", "propagate": False}},
}


def child_exit(_server: Any, worker: Any) -> None:
    from prometheus_client import multiprocess

    # Drop a dead worker's live gauges from the shared metrics directory.
    multiprocess.mark_process_dead(worker.pid)  # type: ignore[no-untyped-call]


def post_worker_init(_worker: Any) -> None:
    # The application is loaded: its ~130k objects (modules, routes, the SQLAlchemy metadata)
    # live as long as the worker. Frozen, the collector stops walking them, and a full
    # collection takes ~3-4 ms instead of ~60 ms during which every request of the worker stood
    # still (`make bench`: a gevent worker's greenlets all stop at once).
    gc.freeze()
