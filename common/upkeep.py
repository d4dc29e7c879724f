"""Upkeep chores on schedules of their own: a chore that fails is logged and tried again when
it is next due, and never stops the others (or the process that runs them)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import structlog

log = structlog.get_logger(__name__)


@dataclass
class UpkeepStep:
    """One upkeep chore on its own schedule; due at once, then every `every_s`."""

    name: str
    every_s: float
    run: Callable[[], None]
    due_at: float = 0.0

    def run_if_due(self, now: float) -> None:
        if now < self.due_at:
            return
        self.due_at = now + self.every_s
        try:
            self.run()
        except Exception as exc:
            log.warning("upkeep_failed", step=self.name, error=str(exc))
