"""Many callers at once, to show that a limit holds under a race."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


def all_at_once(count: int, action: Callable[[int], T]) -> list[T]:
    """Runs `action(0)` ... `action(count - 1)`, each in a thread of its own, released together
    by a barrier; returns their results in the order they finished."""
    barrier = threading.Barrier(count)
    results: list[T] = []

    def run(number: int) -> None:
        barrier.wait()
        results.append(action(number))

    threads = [threading.Thread(target=run, args=(number,)) for number in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return results
