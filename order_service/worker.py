"""`python -m order_service worker`: the outbox relay, plus upkeep: the repair of lost
attempts, the end of cancels left unfinished, the payment timeout's expiry, and pruning.

Several relay threads (and any number of worker replicas) claim disjoint batches with
SKIP LOCKED. A thread that finds a full batch goes straight on; an idle one sleeps briefly; one
that cannot reach SQS or the database backs off, up to a few seconds, and tries again. Each
upkeep step runs on its own schedule and fails on its own: one that raises is logged and tried
again next time, and never keeps the others from running.
"""

from __future__ import annotations

import signal
import threading
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

import structlog
from prometheus_client import start_http_server

from common.db import Database
from common.logs import configure_logging
from common.upkeep import UpkeepStep
from order_service.app import event_queue, order_service
from order_service.heartbeat import MAX_AGE_S, beat
from order_service.outbox import OutboxRelay
from order_service.service import EXPIRY_BATCH, OrderService
from order_service.settings import OrderSettings

log = structlog.get_logger(__name__)
_MAX_BACKOFF_S = 5.0
# The upkeep loop's tick: the shortest schedule a step can have (the expiry's is shortest).
_UPKEEP_TICK_S = 0.25
# Repairing attempts and finishing cancels look for work older than seconds: once a second.
_REPAIR_EVERY_S = 1.0
_PRUNE_EVERY_S = 60.0
# The most cancels the worker finishes in one round (one release call each).
_CANCELS_PER_ROUND = 100
# The most expiry batches one round runs back to back: a backlog is worked off at once, yet
# the other upkeep steps still get their turn within a few seconds.
_EXPIRY_BATCHES_PER_ROUND = 20


class Worker:
    def __init__(self, settings: OrderSettings) -> None:
        self._settings = settings
        db = Database.from_settings(settings, pool_size=settings.relay_threads + 2)
        self._relay = OutboxRelay(
            db,
            event_queue(settings),
            batch_size=settings.relay_batch_size,
            max_attempts=settings.outbox_max_attempts,
        )
        self._orders: OrderService = order_service(settings, db)
        self.stopping = threading.Event()
        # When each relay thread last came round its loop; the heartbeat needs all of them.
        self._looped_at = [time.monotonic()] * settings.relay_threads
        self.upkeep = [
            UpkeepStep("repair_attempts", _REPAIR_EVERY_S, self._repair_attempts),
            UpkeepStep("finish_cancels", _REPAIR_EVERY_S, self._finish_cancels),
            UpkeepStep("expire_orders", settings.order_expiry_interval_s, self._expire_orders),
            UpkeepStep("prune_outbox", _PRUNE_EVERY_S, self._prune_outbox),
            UpkeepStep("prune_failed_attempts", _PRUNE_EVERY_S, self._prune_failed_attempts),
        ]

    def run(self) -> None:
        threads = [
            threading.Thread(target=self._relay_loop, args=(n,), name=f"relay-{n}", daemon=True)
            for n in range(self._settings.relay_threads)
        ]
        threads.append(threading.Thread(target=self._upkeep_loop, name="upkeep", daemon=True))
        if self._settings.worker_metrics_port:
            start_http_server(self._settings.worker_metrics_port)
        for thread in threads:
            thread.start()
        log.info("worker_started", relay_threads=self._settings.relay_threads)
        for thread in threads:
            thread.join()
        log.info("worker_stopped")

    def _relay_loop(self, index: int) -> None:
        backoff = _Backoff(self._settings.relay_idle_poll_s)
        while not self.stopping.is_set():
            self._looped_at[index] = time.monotonic()
            try:
                sent = self._relay.relay_batch()
            except Exception as exc:
                log.warning("relay_failed", error=str(exc), retry_in_s=backoff.next_failure())
                self.stopping.wait(backoff.delay)
                continue
            backoff.reset()
            if sent < self._settings.relay_batch_size:
                self.stopping.wait(self._settings.relay_idle_poll_s)

    def _upkeep_loop(self) -> None:
        while not self.stopping.wait(_UPKEEP_TICK_S):
            self._beat_if_relaying()
            self.run_upkeep_due(time.monotonic())

    def run_upkeep_due(self, now: float) -> None:
        for step in self.upkeep:
            step.run_if_due(now)

    def _repair_attempts(self) -> None:
        released = self._orders.repair_attempts(stale_after_s=self._settings.attempt_repair_after_s)
        if released:
            log.info("attempts_repaired", released=released)

    def _finish_cancels(self) -> None:
        finished = self._orders.finish_begun_cancels(
            begun_before_s=self._settings.cancel_finish_after_s, limit=_CANCELS_PER_ROUND
        )
        if finished:
            log.info("cancels_finished", finished=finished)

    def _expire_orders(self) -> None:
        expired = 0
        for _ in range(_EXPIRY_BATCHES_PER_ROUND):
            cancelled = self._orders.expire_due_orders(limit=EXPIRY_BATCH)
            expired += cancelled
            if cancelled < EXPIRY_BATCH:
                break
        if expired:
            log.info("orders_expired", cancelled=expired)

    def _prune_outbox(self) -> None:
        self._relay.prune(retention=timedelta(hours=self._settings.outbox_retention_hours))

    def _prune_failed_attempts(self) -> None:
        retention = timedelta(hours=self._settings.failed_attempt_retention_hours)
        pruned = self._orders.prune_failed_attempts(retention=retention)
        if pruned:
            log.info("failed_attempts_pruned", deleted=pruned)

    def _beat_if_relaying(self) -> None:
        """A relay thread stuck in a call that never returns stops the heartbeat, so the
        liveness probe restarts the process instead of letting events wait forever."""
        if time.monotonic() - min(self._looped_at) < MAX_AGE_S:
            try:
                beat(Path(self._settings.worker_heartbeat_file))
            except OSError as exc:
                log.warning("heartbeat_not_written", error=str(exc))


class _Backoff:
    def __init__(self, base_s: float) -> None:
        self._base = base_s
        self.delay = base_s

    def next_failure(self) -> float:
        self.delay = min(_MAX_BACKOFF_S, max(self._base, self.delay * 2))
        return self.delay

    def reset(self) -> None:
        self.delay = self._base


def run_worker() -> None:
    settings = OrderSettings()
    configure_logging("order_worker", settings.log_level)
    worker = Worker(settings)

    def stop(*_: Any) -> None:
        worker.stopping.set()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    worker.run()
