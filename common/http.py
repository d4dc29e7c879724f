"""The one way a service calls another: pooled keep-alive connections, timeouts, bounded retries.

Retries happen only for methods that are safe to repeat (GET, PUT, DELETE...) or for calls the
caller marks idempotent (a POST carrying a reservation id), and only on connection failures
and 502/503/504, never on a 4xx. Built on urllib3 alone: these are a handful of JSON calls to
known hosts, and `requests`' session machinery cost more CPU per call than the call itself.
"""

from __future__ import annotations

import json as jsonlib
from dataclasses import dataclass
from typing import Any

import urllib3
from flask import g, has_request_context
from urllib3.util.retry import Retry

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


def _retry(retries: int, allowed_methods: frozenset[str]) -> Retry:
    return Retry(
        total=retries,
        connect=retries,
        read=retries,
        status=retries,
        backoff_factor=0.05,
        backoff_max=0.5,
        status_forcelist=_RETRY_STATUSES,
        allowed_methods=allowed_methods,
        raise_on_status=False,
        respect_retry_after_header=False,
    )


class ServiceClient:
    """A client for one downstream service at `base_url`, safe to share between threads."""

    def __init__(
        self,
        base_url: str,
        *,
        dependency_name: str,
        connect_timeout_s: float,
        read_timeout_s: float,
        retries: int = 2,
        pool_size: int = 32,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.dependency_name = dependency_name
        # The pool is per host; a base URL with a path (behind a gateway) keeps it as a prefix.
        self._path_prefix = urllib3.util.parse_url(self.base_url).path or ""
        # Not blocking: a burst beyond the pool opens extra connections rather than waiting.
        self._pool = urllib3.connection_from_url(
            self.base_url,
            maxsize=pool_size,
            timeout=urllib3.Timeout(connect=connect_timeout_s, read=read_timeout_s),
        )
        self._safe = _retry(retries, Retry.DEFAULT_ALLOWED_METHODS)
        self._idempotent = _retry(retries, Retry.DEFAULT_ALLOWED_METHODS | {"POST"})
        self._once = _retry(0, Retry.DEFAULT_ALLOWED_METHODS)

    def request(
        self,
        method: str,
        path: str,
        *,
        idempotent: bool = False,
        headers: dict[str, str] | None = None,
        json: Any = None,
    ) -> Answer:
        """Any connection failure or timeout becomes a 503 for our own caller."""
        outgoing = {**_request_id_header(), **(headers or {})}
        body = None
        if json is not None:
            body = jsonlib.dumps(json).encode()
            outgoing["Content-Type"] = "application/json"
        try:
            response = self._pool.urlopen(
                method,
                self._path_prefix + path,
                body=body,
                headers=outgoing,
                retries=self._retry_for(method, idempotent),
            )
        except urllib3.exceptions.HTTPError as exc:
            raise ServiceUnavailable(
                f"The {self.dependency_name} is unavailable.", retry_after_s=2
            ) from exc
        return Answer(response.status, response.data)

    def _retry_for(self, method: str, idempotent: bool) -> Retry:
        if idempotent:
            return self._idempotent
        if method.upper() in Retry.DEFAULT_ALLOWED_METHODS:
            return self._safe
        return self._once

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
