"""The services over HTTP, each call shown as request and answer when a demo narrates it."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import requests

from shopctl.formatting import format_request, format_response

TIMEOUT_S = (2.0, 15.0)


@dataclass(frozen=True)
class Answer:
    status: int
    headers: Mapping[str, str]
    body: Any

    def field(self, name: str) -> Any:
        return self.body.get(name) if isinstance(self.body, dict) else None


class ShopApi:
    """A requests session that optionally prints every exchange through `show`."""

    def __init__(self, show: Callable[[str], None] | None = None) -> None:
        self._session = requests.Session()
        self._show = show

    def call(
        self,
        method: str,
        url: str,
        *,
        body: Any = None,
        token: str | None = None,
        headers: Mapping[str, str] | None = None,
        quiet: bool = False,
    ) -> Answer:
        sent = dict(headers or {})
        if token:
            sent["Authorization"] = f"Bearer {token}"
        show = None if quiet else self._show
        if show:
            show(format_request(method, url, body=body, headers=sent))
        response = self._session.request(
            method, url, json=body, headers=sent, timeout=TIMEOUT_S, allow_redirects=False
        )
        answer = Answer(response.status_code, dict(response.headers), _body(response))
        if show:
            show(format_response(answer.status, answer.headers, answer.body))
        return answer

    def close(self) -> None:
        self._session.close()


def _body(response: requests.Response) -> Any:
    if not response.content:
        return None
    try:
        return response.json()
    except ValueError:
        return response.text[:500]
