"""Entity tags and `If-Match` (RFC 9110 §8.8.3, §13.1.1) for optimistic concurrency."""

from __future__ import annotations

import hashlib
import json
from typing import Any


def strong_etag(representation: Any) -> str:
    """A quoted strong tag that changes exactly when the JSON representation does."""
    canonical = json.dumps(representation, sort_keys=True, separators=(",", ":"), default=str)
    return '"' + hashlib.sha256(canonical.encode()).hexdigest()[:32] + '"'


def if_match_satisfied(header: str | None, current_etag: str) -> bool:
    """No header means no precondition. `*` matches any current representation.

    If-Match uses the strong comparison, so a weak tag (W/"...") never matches.
    """
    if header is None:
        return True
    candidates = [tag.strip() for tag in header.split(",")]
    return "*" in candidates or current_etag in candidates
