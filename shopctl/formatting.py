"""How shopctl shows requests, answers and events to a person: pure functions, unit-tested."""

from __future__ import annotations

import json
from collections.abc import Mapping
from http import HTTPStatus
from typing import Any

# Headers worth seeing in a walk-through; the rest is noise on a terminal.
SHOWN_REQUEST_HEADERS = ("Idempotency-Key", "If-Match")
SHOWN_RESPONSE_HEADERS = ("Location", "ETag", "Retry-After")
_SECRET_FIELDS = {"password"}
_TOKEN_FIELDS = {"accessToken"}


def redact(value: Any) -> Any:
    """Passwords hidden and tokens shortened, so a demo's output is safe to paste."""
    if isinstance(value, Mapping):
        return {key: _redact_field(key, item) for key, item in value.items()}
    if isinstance(value, list):
        return [redact(item) for item in value]
    return value


def _redact_field(key: str, value: Any) -> Any:
    if key in _SECRET_FIELDS and isinstance(value, str):
        return "********"
    if key in _TOKEN_FIELDS and isinstance(value, str) and len(value) > 24:
        return f"{value[:16]}…({len(value)} chars)"
    return redact(value)


# An object or list of plain values this short stays on one line (an order's items, say).
ONE_LINE_WIDTH = 88


def pretty_json(value: Any, indent: str = "  ") -> str:
    text = _render(redact(value), 0)
    return "\n".join(indent + line for line in text.splitlines())


def _render(value: Any, depth: int) -> str:
    compact = json.dumps(value, ensure_ascii=False, separators=(", ", ": "))
    if not isinstance(value, dict | list) or not value:
        return compact
    children = value.values() if isinstance(value, dict) else value
    flat = all(not isinstance(child, dict | list) for child in children)
    if depth > 0 and flat and len(compact) <= ONE_LINE_WIDTH:
        return compact
    pad = "  " * (depth + 1)
    if isinstance(value, dict):
        inner = [f"{pad}{json.dumps(k)}: {_render(v, depth + 1)}" for k, v in value.items()]
        return "{\n" + ",\n".join(inner) + "\n" + "  " * depth + "}"
    inner = [f"{pad}{_render(item, depth + 1)}" for item in value]
    return "[\n" + ",\n".join(inner) + "\n" + "  " * depth + "]"


def format_request(
    method: str,
    url: str,
    *,
    body: Any = None,
    headers: Mapping[str, str] | None = None,
) -> str:
    lines = [f"→ {method} {url}"]
    for name in SHOWN_REQUEST_HEADERS:
        if headers and name in headers:
            lines.append(f"  {name}: {headers[name]}")
    if headers and "Authorization" in headers:
        lines.append("  Authorization: Bearer …")
    if body is not None:
        lines.append(pretty_json(body))
    return "\n".join(lines)


def format_response(status: int, headers: Mapping[str, str], body: Any) -> str:
    lines = [f"← {status} {_reason(status)}"]
    for name in SHOWN_RESPONSE_HEADERS:
        if name in headers:
            lines.append(f"  {name}: {headers[name]}")
    if body not in (None, ""):
        lines.append(pretty_json(body) if not isinstance(body, str) else f"  {body}")
    return "\n".join(lines)


def _reason(status: int) -> str:
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return ""


def short_id(value: Any) -> str:
    """The last 12 hex digits of a UUIDv7 differ between ids made in the same millisecond."""
    text = str(value or "?")
    return f"…{text[-12:]}" if len(text) > 12 else text


def format_event(body: Mapping[str, Any], attributes: Mapping[str, str] | None = None) -> str:
    """One `order-events` message as one readable line."""
    attributes = attributes or {}
    event_type = str(body.get("eventType") or attributes.get("eventType") or "?")
    items = body.get("items") or []
    item_text = ", ".join(
        f"{item.get('quantity', '?')} x {short_id(item.get('productId'))}"
        for item in items
        if isinstance(item, Mapping)
    )
    parts = [
        str(body.get("occurredAt") or "")[11:23] or "--:--:--",
        f"{event_type:<16}",
        f"order {short_id(body.get('orderId'))}",
        f"{body.get('status', '?'):<9}",
        f"total {body.get('totalAmount', '?')}",
        f"user {short_id(body.get('userId'))}",
    ]
    if item_text:
        parts.append(f"items [{item_text}]")
    if body.get("reason"):
        parts.append(f"reason {body['reason']}")
    if attributes.get("requestId"):
        parts.append(f"request {attributes['requestId']}")
    parts.append(f"event {short_id(body.get('eventId'))}")
    return "  ".join(parts)


def format_outbox_status(report: Mapping[str, Any]) -> str:
    """The order service's outbox report (`OutboxStatus.report()`), one fact a line; each
    parked event (SQS refused it too often, the relay no longer tries it) on a line of its own."""
    lines = [
        f"pending        {report['pending']}",
        f"oldest pending {report['oldestPendingAt'] or '-'}",
        f"last sent      {report['lastSentAt'] or '-'}",
        f"parked         {report['parked']}",
    ]
    lines += [
        f"  parked {event['parkedAt']}  {event['eventType']}  order {short_id(event['orderId'])}"
        f"  event {event['eventId']}  after {event['attempts']} refusals"
        for event in report["parkedEvents"]
    ]
    return "\n".join(lines)
