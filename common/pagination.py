"""Keyset pagination: an opaque cursor that carries the last id of the previous page."""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

from pydantic import BaseModel, ConfigDict, Field

from common.errors import Unprocessable, field_error
from common.ids import is_canonical_uuid

T = TypeVar("T")
DEFAULT_LIMIT, MAX_LIMIT = 20, 100
# The cursors this service issues are 63 characters; a longer one is refused before it is
# decoded and parsed (a few kilobytes of nested brackets would exhaust json's recursion).
MAX_CURSOR_CHARS = 100


class PageQuery(BaseModel):
    model_config = ConfigDict(extra="forbid")

    limit: int = Field(default=DEFAULT_LIMIT, ge=1, le=MAX_LIMIT)
    cursor: str | None = None

    def after_id(self) -> str | None:
        return None if self.cursor is None else decode_cursor(self.cursor)


def encode_cursor(last_id: str) -> str:
    payload = json.dumps({"after": last_id}).encode()
    return base64.urlsafe_b64encode(payload).decode().rstrip("=")


def decode_cursor(cursor: str) -> str:
    if len(cursor) > MAX_CURSOR_CHARS:
        raise _bad_cursor()
    try:
        padded = cursor + "=" * (-len(cursor) % 4)
        after = json.loads(base64.urlsafe_b64decode(padded.encode()))["after"]
    except (binascii.Error, ValueError, TypeError, KeyError) as exc:
        raise _bad_cursor() from exc
    if not isinstance(after, str) or not is_canonical_uuid(after):
        raise _bad_cursor()
    return after


def _bad_cursor() -> Unprocessable:
    return Unprocessable(
        "The cursor is not one this service issued.",
        errors=[field_error("cursor", "invalid cursor")],
    )


def page_of(
    rows: Sequence[T], limit: int, *, id_of: Callable[[T], str], render: Callable[[T], Any]
) -> dict[str, Any]:
    """`rows` was fetched with limit + 1, so one extra row tells that a next page exists."""
    visible = rows[:limit]
    has_more = len(rows) > limit
    return {
        "items": [render(row) for row in visible],
        "nextCursor": encode_cursor(id_of(visible[-1])) if has_more and visible else None,
    }
