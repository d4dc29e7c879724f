"""Many threads' calls to one dependency, sent together: group commit for service calls.

While one batch is on its way, the calls that arrive queue up; when its answer comes back, the
thread whose call heads the queue sends everything queued as the next batch. An idle
dependency therefore sees each call at once and alone (nothing waits for a timer; a caller
that finds nothing in flight only yields once, so the calls ready at that moment go with it),
and a busy one sees fewer, larger requests: the fixed cost of a request and of a commit is
shared.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Generic, TypeVar

from common.errors import ServiceUnavailable
from common.metrics import BATCH_SIZE

T = TypeVar("T")
R = TypeVar("R")

# What a batch answers for each of its items, in order: a result, or the error to raise there.
SendBatch = Callable[[list[T]], Sequence[R | BaseException]]


# How long a call waits for its turn or for a batch someone else sends, unless told otherwise.
DEFAULT_WAIT_TIMEOUT_S = 30.0


class BatchNotAnswered(ServiceUnavailable):
    """A call got no answer in time: the batch ahead of it or its own did not come back, or
    the caller sending its batch was killed. The dependency may or may not have done it."""

    def __init__(self, name: str, why: str) -> None:
        super().__init__(f"The {name} batch {why}; try again.", retry_after_s=1)


@dataclass(eq=False)
class _Call(Generic[T, R]):
    item: T
    size: int
    outcome: Future[R] = field(default_factory=Future)
    # Set when the outcome is there, or when this call heads the queue and must send it.
    woken: threading.Event = field(default_factory=threading.Event)
    # This call is the one to send the next batch (it led, or was handed the turn).
    has_turn: bool = False


class Coalescer(Generic[T, R]):
    """Safe to share between the threads (or greenlets) of a process; one batch is in flight
    at a time. No call waits longer than `wait_timeout_s` for a batch it does not send itself,
    and the turn to send is handed on whatever becomes of the call holding it (an error, a
    timeout, a kill): one stuck or killed caller never wedges the rest."""

    def __init__(
        self,
        name: str,
        send: SendBatch[T, R],
        *,
        max_calls: int,
        max_size: int | None = None,
        size_of: Callable[[T], int] = lambda _: 1,
        wait_timeout_s: float = DEFAULT_WAIT_TIMEOUT_S,
    ) -> None:
        self._name = name
        self._send = send
        self._sizes = BATCH_SIZE.labels(name)
        self._max_calls = max_calls
        self._max_size = max_size if max_size is not None else max_calls
        self._size_of = size_of
        self._wait_timeout_s = wait_timeout_s
        self._lock = threading.Lock()
        self._queue: list[_Call[T, R]] = []
        self._sending = False

    def call(self, item: T) -> R:
        """The item's own result, or its own error raised; an error of the whole batch (the
        dependency down) is raised in every call the batch carried. BatchNotAnswered (a 503)
        when no answer came in time."""
        call: _Call[T, R] = _Call(item, self._size_of(item))
        with self._lock:
            self._queue.append(call)
            call.has_turn = not self._sending
            self._sending = True
        try:
            if call.has_turn:
                # A yield, not a timer: callers already runnable (under load, often the rest of
                # a wave of orders that left the previous batch together) join this batch
                # instead of waiting behind a batch of one.
                time.sleep(0)
            elif not call.woken.wait(self._wait_timeout_s):
                raise BatchNotAnswered(self._name, f"sent no answer in {self._wait_timeout_s} s")
            if not call.outcome.done():
                self._send_next_batch()
        except BaseException:
            self._leave(call)
            raise
        return call.outcome.result()

    def _leave(self, call: _Call[T, R]) -> None:
        """A call that gives up while still queued leaves the queue, so no batch is sent for
        a caller who has gone; if it held the turn, the turn goes to the next in line."""
        with self._lock:
            if call not in self._queue:
                return  # already in a batch, whose sender answers it and hands the turn on
            self._queue.remove(call)
            if call.has_turn:
                self._pass_turn()

    def _send_next_batch(self) -> None:
        """Sends the head of the queue, answers it, and hands the next batch to the thread whose
        call then heads the queue, so no thread sends more than its own call's batch."""
        batch = self._take_batch()
        outcomes: Sequence[R | BaseException]
        try:
            outcomes = self._outcomes_of(batch)
        except BaseException:
            # This caller was killed while it sent (GreenletExit, gevent.Timeout): the others
            # in its batch hear so, and the exception goes on in the caller alone.
            self._answer(batch, [BatchNotAnswered(self._name, "was interrupted")] * len(batch))
            raise
        finally:
            with self._lock:
                self._pass_turn()
        self._answer(batch, outcomes)

    def _outcomes_of(self, batch: list[_Call[T, R]]) -> Sequence[R | BaseException]:
        self._sizes.observe(len(batch))
        try:
            outcomes = self._send([call.item for call in batch])
            if len(outcomes) != len(batch):
                raise RuntimeError(f"{len(outcomes)} outcomes for a batch of {len(batch)}")
        except Exception as failure:  # every waiting caller must hear of it, whatever it is
            return [failure] * len(batch)
        return outcomes

    @staticmethod
    def _answer(batch: list[_Call[T, R]], outcomes: Sequence[R | BaseException]) -> None:
        for call, outcome in zip(batch, outcomes, strict=True):
            if isinstance(outcome, BaseException):
                call.outcome.set_exception(outcome)
            else:
                call.outcome.set_result(outcome)
            call.woken.set()

    def _take_batch(self) -> list[_Call[T, R]]:
        """The queue's head, and after it as many calls as fit within both bounds."""
        with self._lock:
            size, taken = self._queue[0].size, 1
            while (
                taken < min(len(self._queue), self._max_calls)
                and size + self._queue[taken].size <= self._max_size
            ):
                size += self._queue[taken].size
                taken += 1
            batch, self._queue[:taken] = self._queue[:taken], []
        return batch

    def _pass_turn(self) -> None:
        """With the lock held: the call now heading the queue sends next, or nobody is."""
        if self._queue:
            self._queue[0].has_turn = True
            self._queue[0].woken.set()
        else:
            self._sending = False


def together_else_alone(
    items: list[T], write: Callable[[list[T]], None], *, falls_back: Callable[[Exception], bool]
) -> list[Exception | None]:
    """Group commit's other half: `write` the whole batch in one transaction and, when some
    item cannot go with the rest (`falls_back` says which failures mean that; the transaction
    rolled back), `write` each item alone, so only that item hears of it. Any other failure of
    the batch (the database down) is every item's."""
    if len(items) > 1:
        try:
            write(items)
            return [None] * len(items)
        except Exception as failure:
            if not falls_back(failure):
                raise
    outcomes: list[Exception | None] = []
    for item in items:
        try:
            write([item])
        except Exception as failure:
            outcomes.append(failure)
        else:
            outcomes.append(None)
    return outcomes
