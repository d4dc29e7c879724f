"""The coalescer's rules, with real threads: who sends, what travels together, who hears what."""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
from prometheus_client import REGISTRY

from common.batching import BatchNotAnswered, Coalescer, together_else_alone
from tests.support.greenlets import run_patched

WAIT_S = 10


class Recorder:
    """A dependency that answers each item doubled (or refuses negative ones) and records the
    batches it was sent. While `hold` is set, the first batch waits to be let go."""

    def __init__(self) -> None:
        self.batches: list[list[int]] = []
        self.hold = threading.Event()
        self.first_arrived = threading.Event()
        self.let_go = threading.Event()
        self.fail_with: BaseException | None = None

    def send(self, items: list[int]) -> list[int | Exception]:
        self.batches.append(items)
        if len(self.batches) == 1 and self.hold.is_set():
            self.first_arrived.set()
            assert self.let_go.wait(WAIT_S)
        if self.fail_with is not None:
            raise self.fail_with
        return [ValueError(f"refused {i}") if i < 0 else i * 2 for i in items]


def coalescer(recorder: Recorder, **bounds: int) -> Coalescer[int, int]:
    return Coalescer(
        "test",
        recorder.send,
        max_calls=bounds.get("max_calls", 64),
        max_size=bounds.get("max_size", 100),
        size_of=lambda i: abs(i) or 1,
    )


def queue_behind_a_held_batch(recorder: Recorder, batcher: Coalescer[int, int], items: list[int]):
    """Sends 1 alone and holds it; `items` are then called while it is in flight."""
    recorder.hold.set()
    pool = ThreadPoolExecutor(max_workers=len(items) + 1)
    first = pool.submit(batcher.call, 1)
    assert recorder.first_arrived.wait(WAIT_S)
    queued = [pool.submit(batcher.call, item) for item in items]
    # Every queued call is waiting (seen in the coalescer's queue) before the first is let go.
    while len(batcher._queue) < len(items):
        time.sleep(0.001)
    recorder.let_go.set()
    return pool, first, queued


def test_a_call_with_nothing_in_flight_goes_at_once_and_alone():
    recorder = Recorder()
    batcher = coalescer(recorder)
    assert batcher.call(3) == 6
    assert batcher.call(4) == 8
    assert recorder.batches == [[3], [4]]


def test_calls_made_while_a_batch_is_in_flight_go_together_next():
    recorder = Recorder()
    batcher = coalescer(recorder)
    pool, first, queued = queue_behind_a_held_batch(recorder, batcher, [2, 3, 4, 5])
    assert first.result(WAIT_S) == 2
    assert [f.result(WAIT_S) for f in queued] == [4, 6, 8, 10]
    assert recorder.batches[0] == [1]
    assert sorted(recorder.batches[1]) == [2, 3, 4, 5]
    pool.shutdown()


def test_a_refused_item_fails_only_its_own_call():
    recorder = Recorder()
    batcher = coalescer(recorder)
    pool, first, queued = queue_behind_a_held_batch(recorder, batcher, [2, -3, 4])
    first.result(WAIT_S)
    by_item = dict(zip([2, -3, 4], queued, strict=True))
    assert by_item[2].result(WAIT_S) == 4 and by_item[4].result(WAIT_S) == 8
    with pytest.raises(ValueError, match="refused -3"):
        by_item[-3].result(WAIT_S)
    pool.shutdown()


def test_a_failed_batch_fails_every_call_it_carried_and_the_next_call_goes_on():
    recorder = Recorder()
    recorder.fail_with = ConnectionError("down")
    batcher = coalescer(recorder)
    pool, first, queued = queue_behind_a_held_batch(recorder, batcher, [2, 3])
    for call in (first, *queued):
        with pytest.raises(ConnectionError, match="down"):
            call.result(WAIT_S)
    recorder.fail_with = None
    assert batcher.call(7) == 14
    pool.shutdown()


def test_a_wrong_number_of_answers_fails_the_batch_instead_of_misrouting_them():
    answers_nothing: Coalescer[int, int] = Coalescer(
        "test", lambda items: [], max_calls=8, max_size=8
    )
    with pytest.raises(RuntimeError, match="0 outcomes for a batch of 1"):
        answers_nothing.call(5)


def test_a_batch_keeps_within_both_bounds_and_an_oversized_call_goes_alone():
    recorder = Recorder()
    batcher = coalescer(recorder, max_calls=3, max_size=10)
    pool, first, queued = queue_behind_a_held_batch(recorder, batcher, [1, 1, 1, 1, 4, 6, 20])
    for call in (first, *queued):
        call.result(WAIT_S)
    later = recorder.batches[1:]
    assert sorted(i for batch in later for i in batch) == [1, 1, 1, 1, 4, 6, 20]
    assert all(len(batch) <= 3 for batch in later)
    assert all(sum(batch) <= 10 or batch == [20] for batch in later)
    assert [20] in later
    pool.shutdown()


def test_many_threads_each_get_their_own_answer():
    recorder = Recorder()
    batcher = coalescer(recorder, max_calls=5, max_size=1000)
    with ThreadPoolExecutor(max_workers=16) as pool:
        answers = list(pool.map(batcher.call, range(1, 401)))
    assert answers == [i * 2 for i in range(1, 401)]
    assert sorted(i for batch in recorder.batches for i in batch) == list(range(1, 401))


class Ledger:
    """A store where negative items cannot go in: together, one refuses the whole batch."""

    def __init__(self) -> None:
        self.written: list[int] = []
        self.transactions = 0

    def together(self, items: list[int]) -> None:
        self.transactions += 1
        if any(item < 0 for item in items):
            raise KeyError("a negative item")
        if 0 in items:
            raise ConnectionError("the store is down")
        self.written.extend(items)


def write(ledger: Ledger, items: list[int]) -> list[Exception | None]:
    return together_else_alone(items, ledger.together, falls_back=lambda e: isinstance(e, KeyError))


def test_a_batch_that_can_go_together_is_one_transaction():
    ledger = Ledger()
    assert write(ledger, [1, 2, 3]) == [None, None, None]
    assert (ledger.written, ledger.transactions) == ([1, 2, 3], 1)


def test_an_item_that_cannot_go_with_the_rest_fails_alone():
    ledger = Ledger()
    outcomes = write(ledger, [1, -2, 3])
    assert outcomes[0] is None and outcomes[2] is None
    assert isinstance(outcomes[1], KeyError)
    assert ledger.written == [1, 3]


def test_any_other_failure_is_every_items():
    with pytest.raises(ConnectionError):
        write(Ledger(), [1, 0, 3])


def test_a_single_item_goes_alone_at_once():
    ledger = Ledger()
    [outcome] = write(ledger, [-1])
    assert isinstance(outcome, KeyError)
    assert ledger.transactions == 1


def test_every_batch_is_measured_by_its_size():
    def sample(name: str) -> float:
        return REGISTRY.get_sample_value(name, {"batch": "measured"}) or 0.0

    recorder = Recorder()
    batcher = Coalescer("measured", recorder.send, max_calls=8)
    count, total = sample("shop_batch_size_count"), sample("shop_batch_size_sum")
    pool, first, queued = queue_behind_a_held_batch(recorder, batcher, [2, 3, 4])
    for call in (first, *queued):
        call.result(WAIT_S)
    pool.shutdown()
    assert sample("shop_batch_size_count") - count == 2
    assert sample("shop_batch_size_sum") - total == 4


_WAVE_UNDER_GEVENT = """
    import gevent

    from common.batching import Coalescer

    sizes = []

    def send(items):
        sizes.append(len(items))
        gevent.sleep(0.01)  # the round trip, during which later callers queue
        return items

    coalescer = Coalescer("wave", send, max_calls=16)
    gevent.joinall([gevent.spawn(coalescer.call, i) for i in range(5)], raise_error=True)
    print(sizes)
"""


def test_calls_ready_together_under_gevent_go_as_one_batch_not_one_then_the_rest():
    """The order service's greenlets arrive in waves; the first of a wave yields once before
    it sends, so the wave shares one batch instead of a batch of one and then the rest."""
    assert run_patched(_WAVE_UNDER_GEVENT, timeout_s=WAIT_S).strip() == "[5]"


def test_a_send_that_never_returns_fails_the_calls_behind_it_at_their_deadline():
    recorder = Recorder()
    recorder.hold.set()
    batcher = Coalescer("stuck", recorder.send, max_calls=8, wait_timeout_s=0.5)
    pool = ThreadPoolExecutor(max_workers=3)
    stuck = pool.submit(batcher.call, 1)
    assert recorder.first_arrived.wait(WAIT_S)
    started = time.monotonic()
    behind = [pool.submit(batcher.call, item) for item in (2, 3)]
    try:
        for call in behind:
            with pytest.raises(BatchNotAnswered) as raised:
                call.result(WAIT_S)
            assert raised.value.status == 503
        assert time.monotonic() - started < 3
        assert batcher._queue == []  # gone from the queue: no batch is sent for them
    finally:
        recorder.let_go.set()
    assert stuck.result(WAIT_S) == 2
    assert batcher.call(4) == 8  # the turn came back once the stuck send returned
    assert recorder.batches == [[1], [4]]
    pool.shutdown()


_KILLED_UNDER_GEVENT = """
    import gevent
    from gevent.event import Event

    from common.batching import BatchNotAnswered, Coalescer

    in_flight, let_go = Event(), Event()
    batches = []

    def send(items):
        batches.append(items)
        if items[0] < 0:  # a send that hangs until its caller is killed
            in_flight.set()
            gevent.sleep(60)
        let_go.wait(5)
        return [item * 2 for item in items]

    def coalescer():
        in_flight.clear(), let_go.clear(), batches.clear()
        return Coalescer("killed", send, max_calls=16, wait_timeout_s=5)

    def joined(greenlets):
        gevent.joinall(greenlets, timeout=10)
        assert all(g.ready() for g in greenlets), "a call is wedged"
        return greenlets

    # The leader killed in its yield, before it sent anything.
    batcher = coalescer()
    leader = gevent.spawn(batcher.call, 1)
    gevent.sleep(0)
    leader.kill()
    let_go.set()
    assert [g.value for g in joined([gevent.spawn(batcher.call, 2)])] == [4]

    # A queued caller killed (GreenletExit) while a batch is in flight, and one timed out
    # by gevent.Timeout: neither leaves a turn that nobody takes.
    batcher = coalescer()
    first = gevent.spawn(batcher.call, 1)
    gevent.sleep(0.05)
    killed = gevent.spawn(batcher.call, 2)

    def gives_up():
        with gevent.Timeout(0.1):
            batcher.call(3)

    timed_out = gevent.spawn(gives_up)
    gevent.sleep(0.05)
    killed.kill()
    gevent.sleep(0.1)
    later = gevent.spawn(batcher.call, 4)
    gevent.sleep(0.05)
    let_go.set()
    joined([first, timed_out, later])
    assert (first.value, later.value) == (2, 8), (first.value, later.value)
    assert isinstance(timed_out.exception, gevent.Timeout)
    assert [2] not in batches and [3] not in batches, batches

    # The sender killed mid-send, by GreenletExit or by its own gevent.Timeout: the calls in
    # its batch hear a 503 (not the sender's exception), and the next calls go on.
    def sends_within_a_timeout(item):
        with gevent.Timeout(0.1):
            batcher.call(item)

    for kill in ("GreenletExit", "Timeout"):
        batcher = coalescer()
        let_go.set()
        sender = gevent.spawn(sends_within_a_timeout if kill == "Timeout" else batcher.call, -1)
        passengers = [gevent.spawn(batcher.call, item) for item in (5, 6)]
        in_flight.wait()
        assert batches == [[-1, 5, 6]], batches
        if kill == "GreenletExit":
            sender.kill()
        joined([sender, *passengers])
        assert all(isinstance(p.exception, BatchNotAnswered) for p in passengers), passengers
        assert [g.value for g in joined([gevent.spawn(batcher.call, 7)])] == [14]
    print("ok")
"""


def test_a_killed_caller_never_wedges_the_coalescer_under_gevent():
    assert run_patched(_KILLED_UNDER_GEVENT, timeout_s=30).strip() == "ok"
