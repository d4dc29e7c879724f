"""How `make run` shows its processes' logs together: one readable line each on a terminal,
one JSON object each (with the process named) when the output goes to a file or a pipe."""

from __future__ import annotations

import json
from typing import Any

RESET = "\033[0m"
DIM = "\033[2m"
LEVEL_COLOURS = {"warning": "\033[33m", "error": "\033[31m", "critical": "\033[31m"}
# Fields the terminal line already shows in its own columns (or that the prefix repeats).
_SHOWN = {"timestamp", "level", "event", "service", "logger"}


def _parse(raw: str) -> dict[str, Any] | None:
    try:
        record = json.loads(raw)
    except ValueError:
        return None
    return record if isinstance(record, dict) else None


def as_json(process: str, raw: str) -> str:
    """One JSON object per line: the service's own record with `process` added, or the text."""
    line = raw.rstrip("\n")
    record = _parse(line)
    if record is None:
        record = {"message": line}
    return json.dumps({"process": process, **record}, ensure_ascii=False)


def for_terminal(process: str, raw: str, colour: str = "") -> str:
    """`process | 12:00:01.123 info  request method=GET path=/health status=200`."""
    line = raw.rstrip("\n")
    prefix = f"{colour}{process:<15}|{RESET if colour else ''} "
    record = _parse(line)
    if record is None or "event" not in record:
        return prefix + line
    level = str(record.get("level", ""))
    level_text = f"{level:<7}"
    if colour and level in LEVEL_COLOURS:
        level_text = f"{LEVEL_COLOURS[level]}{level_text}{RESET}"
    clock = str(record.get("timestamp", ""))[11:23]
    details = " ".join(
        f"{key}={_value(value)}" for key, value in record.items() if key not in _SHOWN
    )
    text = f"{clock} {level_text} {record['event']}"
    if details:
        text += f" {DIM}{details}{RESET}" if colour else f" {details}"
    return prefix + text


def _value(value: Any) -> str:
    text = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)
    return json.dumps(text) if " " in text or not text else text
