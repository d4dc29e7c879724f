"""The one way a service calls another: pooled keep-alive connections, timeouts, bounded retries.

Retries happen only for methods that are safe to repeat (GET, PUT, DELETE...) or for calls the
caller marks idempotent (a POST carrying a reservation id), and only on connection failures
and 502/503/504, never on a 4xx.
"""

from __future__ import annotations

from typing import Any

import requests
from flask import g, has_request_context
from requests.adapters import HTTPAdapter
from urllib3.util.retry import Retry

from common.errors import ServiceUnavailable

_RETRY_STATUSES = (502, 503, 504)


def _adapter(retries: int, pool_size: int, allowed_methods: frozenset[str]) -> HTTPAdapter:
    retry = Retry(
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
    return HTTPAdapter(pool_connections=4, pool_maxsize=pool_size, max_retries=retry)


class ServiceClient:
    """A client for one downstream service at `base_url`."""

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
        self._timeout = (connect_timeout_s, read_timeout_s)
        self._safe = self._session(Retry.DEFAULT_ALLOWED_METHODS, retries, pool_size)
        self._idempotent = self._session(
            Retry.DEFAULT_ALLOWED_METHODS | {"POST"}, retries, pool_size
        )
        self._once = self._session(Retry.DEFAULT_ALLOWED_METHODS, 0, pool_size)

    @staticmethod
    def _session(methods: frozenset[str], retries: int, pool_size: int) -> requests.Session:
        session = requests.Session()
        # Calls between services go straight to each other: no proxy from the environment,
        # and no ~/.netrc lookup on every request.
        session.trust_env = False
        adapter = _adapter(retries, pool_size, frozenset(methods))
        session.mount("http://", adapter)
        session.mount("https://", adapter)
        return session

    def request(
        self,
        method: str,
        path: str,
        *,
        idempotent: bool = False,
        headers: dict[str, str] | None = None,
        **kwargs: Any,
    ) -> requests.Response:
        """Any connection failure or timeout becomes a 503 for our own caller."""
        session = self._session_for(method, idempotent)
        outgoing = {**_request_id_header(), **(headers or {})}
        try:
            return session.request(
                method, self.base_url + path, headers=outgoing, timeout=self._timeout, **kwargs
            )
        except requests.RequestException as exc:
            raise ServiceUnavailable(
                f"The {self.dependency_name} is unavailable.", retry_after_s=2
            ) from exc

    def _session_for(self, method: str, idempotent: bool) -> requests.Session:
        if idempotent:
            return self._idempotent
        if method.upper() in Retry.DEFAULT_ALLOWED_METHODS:
            return self._safe
        return self._once

    def close(self) -> None:
        for session in (self._safe, self._idempotent, self._once):
            session.close()


def _request_id_header() -> dict[str, str]:
    """Carry the id of the request being served, so one id follows it across services."""
    if has_request_context() and g.get("request_id"):
        return {"X-Request-ID": str(g.request_id)}
    return {}
