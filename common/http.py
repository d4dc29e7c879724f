"""The one way a service calls another: pooled keep-alive connections, timeouts, bounded retries.

Retries happen only for methods that are safe to repeat (GET, PUT, DELETE...) or for calls the
caller marks idempotent (a POST carrying a reservation id), and only on connection failures
and 502/503/504, never on a 4xx; a call and all its retries end by one deadline. Built on
urllib3 alone: these are a handful of JSON calls to known hosts, and `requests`' session
machinery cost more CPU per call than the call itself.
"""

from __future__ import annotations

import json as jsonlib
import time
from dataclasses import dataclass
from typing import Any

import urllib3
from flask import g, has_request_context

from common.errors import ServiceUnavailable

_RETRY_STATUSES = (502, 503, 504)


@dataclass(frozen=True)
class Answer:
    """A downstream service's answer, read whole."""

    status_code: int
    body: bytes

    def json(self) -> Any:
        """The body as JSON; ValueError when it is not."""
        return jsonlib.loads(self.body)


# Idempotent by HTTP's definition, so a lost answer may be asked for again.
_SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS", "PUT", "DELETE", "TRACE"})
_BACKOFF_S, _BACKOFF_MAX_S = 0.05, 0.5


class ServiceClient:
    """A client for one downstream service at `base_url`, safe to share between threads.

    Each attempt is bounded by the connect and read timeouts, and a call with all its retries
    by `total_timeout_s`: the caller hears within that, however the dependency fails."""

    def __init__(
        self,
        base_url: str,
        *,
        dependency_name: str,
        connect_timeout_s: float,
        read_timeout_s: float,
        total_timeout_s: float | None = None,
        retries: int = 2,
        pool_size: int = 32,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.dependency_name = dependency_name
        # The pool is per host; a base URL with a path (behind a gateway) keeps it as a prefix.
        self._path_prefix = urllib3.util.parse_url(self.base_url).path or ""
        # Not blocking: a burst beyond the pool opens extra connections rather than waiting.
        self._pool = urllib3.connection_from_url(self.base_url, maxsize=pool_size)
        self._connect_timeout_s = connect_timeout_s
        self._read_timeout_s = read_timeout_s
        self.total_timeout_s = total_timeout_s or connect_timeout_s + read_timeout_s
        self._retries = retries

    def request(
        self,
        method: str,
        path: str,
        *,
        idempotent: bool = False,
        headers: dict[str, str] | None = None,
        json: Any = None,
    ) -> Answer:
        """Retried only when repeating cannot do harm: a connection that never carried the
        request, or a safe or `idempotent` call that failed or answered 502/503/504. Any
        connection failure or timeout becomes a 503 for our own caller."""
        outgoing = {**_request_id_header(), **(headers or {})}
        body = None
        if json is not None:
            body = jsonlib.dumps(json).encode()
            outgoing["Content-Type"] = "application/json"
        repeatable = idempotent or method.upper() in _SAFE_METHODS
        deadline = time.monotonic() + self.total_timeout_s
        attempt = 0
        while True:
            try:
                response = self._pool.urlopen(
                    method,
                    self._path_prefix + path,
                    body=body,
                    headers=outgoing,
                    retries=False,
                    timeout=self._timeout_until(deadline),
                )
            except urllib3.exceptions.HTTPError as exc:
                # A connection never made carried nothing: any method may try again.
                never_sent = isinstance(exc, urllib3.exceptions.ConnectTimeoutError)
                if not ((repeatable or never_sent) and self._backed_off(attempt, deadline)):
                    raise ServiceUnavailable(
                        f"The {self.dependency_name} is unavailable.", retry_after_s=2
                    ) from exc
            else:
                answer = Answer(response.status, response.data)
                if not (
                    repeatable
                    and answer.status_code in _RETRY_STATUSES
                    and self._backed_off(attempt, deadline)
                ):
                    return answer
            attempt += 1

    def _backed_off(self, attempt: int, deadline: float) -> bool:
        """Sleeps before another attempt; False, at once, when no retry is left or the next
        attempt would start past the deadline."""
        pause = min(_BACKOFF_MAX_S, _BACKOFF_S * 2**attempt)
        if attempt >= self._retries or time.monotonic() + pause >= deadline:
            return False
        time.sleep(pause)
        return True

    def _timeout_until(self, deadline: float) -> urllib3.Timeout:
        """This attempt's timeouts, none reaching past the call's deadline."""
        remaining = max(0.001, deadline - time.monotonic())
        return urllib3.Timeout(
            connect=min(self._connect_timeout_s, remaining),
            read=min(self._read_timeout_s, remaining),
            total=remaining,
        )

    def close(self) -> None:
        self._pool.close()


def _request_id_header() -> dict[str, str]:
    """Carry the id of the request being served, so one id follows it across services."""
    request_id = request_id_being_served()
    return {"X-Request-ID": request_id} if request_id else {}


def request_id_being_served() -> str | None:
    if has_request_context() and g.get("request_id"):
        return str(g.request_id)
    return None
