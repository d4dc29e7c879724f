"""A downstream consumer that drains `order-events` as a real one would, recording each event."""

from __future__ import annotations

import json
import threading
import time
from collections import defaultdict
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from devstack.sqs import QUEUE_NAME, local_sqs_client

# SQS answers at most 10 messages per receive.
_FULL_BATCH = 10


class EventDrain:
    """`fill_wait_s`: after a receive that was not full, wait this long before the next, so
    events accumulate into full batches. A downstream does this to spend one receive and one
    delete per 10 events; here it also keeps the consumer from taking the CPU that the system
    under test shares with it. The relay lag is measured where events are sent, not here.

    `paused()`: no receive starts inside the block. A downstream consumer runs on machines of
    its own, so while a slice is measured the events wait on the queue (SQS keeps them) and
    the consumer takes none of the CPU the system shares with it; they are consumed after."""

    def __init__(
        self,
        endpoint: str,
        *,
        threads: int = 2,
        fill_wait_s: float = 0.5,
        queue_name: str = QUEUE_NAME,
    ) -> None:
        self._sqs = local_sqs_client(endpoint)
        self._queue_url = self._sqs.get_queue_url(QueueName=queue_name)["QueueUrl"]
        self._stop = threading.Event()
        # Set while receiving is allowed; cleared inside `paused()`.
        self._running = threading.Event()
        self._running.set()
        self._fill_wait_s = fill_wait_s
        self._lock = threading.Lock()
        self.by_event_id: dict[str, dict[str, Any]] = {}
        # When SQS accepted each event (its SentTimestamp, epoch seconds): its arrival on the
        # queue, free of this consumer's own polling delay.
        self.queued_at: dict[str, float] = {}
        self.deliveries = 0
        self.receive_errors = 0
        self.last_received_at = time.monotonic()
        self._threads = [threading.Thread(target=self._drain, daemon=True) for _ in range(threads)]

    def start(self) -> None:
        for thread in self._threads:
            thread.start()

    def stop(self) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=5)

    @contextmanager
    def paused(self) -> Iterator[None]:
        """A receive already on its way finishes; no other starts until the block ends."""
        self._running.clear()
        try:
            yield
        finally:
            # Quiet is counted from here: the events that waited are still to be received.
            self.last_received_at = time.monotonic()
            self._running.set()

    def _drain(self) -> None:
        while not self._stop.is_set():
            if not self._running.wait(timeout=0.5):
                continue
            try:
                if self._receive_batch() < _FULL_BATCH:
                    self._stop.wait(self._fill_wait_s)
            except (BotoCoreError, ClientError) as exc:
                # A real consumer survives a slow or failed receive; unacknowledged messages
                # come back after their visibility timeout.
                self.receive_errors += 1
                print(f"bench: event consumer retrying after {exc!r}", flush=True)
                time.sleep(0.5)

    def _receive_batch(self) -> int:
        messages = self._sqs.receive_message(
            QueueUrl=self._queue_url,
            MaxNumberOfMessages=_FULL_BATCH,
            WaitTimeSeconds=1,
            AttributeNames=["SentTimestamp"],
        ).get("Messages", [])
        if messages:
            with self._lock:
                for message in messages:
                    event = json.loads(message["Body"])
                    self.by_event_id[event["eventId"]] = event
                    sent_ms = message.get("Attributes", {}).get("SentTimestamp")
                    if sent_ms is not None:
                        self.queued_at[event["eventId"]] = int(sent_ms) / 1000
                    self.deliveries += 1
                self.last_received_at = time.monotonic()
            self._sqs.delete_message_batch(
                QueueUrl=self._queue_url,
                Entries=[
                    {"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]}
                    for i, m in enumerate(messages)
                ],
            )
        return len(messages)

    def wait_until_quiet(self, quiet_s: float = 3.0, timeout_s: float = 60.0) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if time.monotonic() - self.last_received_at > quiet_s:
                return
            time.sleep(0.2)

    def events_by_order(self) -> dict[str, list[str]]:
        grouped: dict[str, list[str]] = defaultdict(list)
        with self._lock:
            for event in self.by_event_id.values():
                grouped[event["orderId"]].append(event["eventType"])
        return grouped

    def expiry_lags_ms(self, expiring_from: float, expiring_until: float) -> list[float]:
        with self._lock:
            return expiry_lags_ms(
                list(self.by_event_id.values()), self.queued_at, expiring_from, expiring_until
            )


def expiry_lags_ms(
    events: list[dict[str, Any]],
    queued_at: dict[str, float],
    expiring_from: float,
    expiring_until: float,
) -> list[float]:
    """For each order due (its `expiresAt`, epoch seconds) in [from, until) and cancelled with
    reason payment_timeout: from its expiresAt to its order_cancelled event's arrival on the
    queue (`queued_at` by event id). The due time is the order_created event's: the cancelled
    event carries the expiresAt after the change, null."""
    due: dict[str, float] = {}
    expired: dict[str, float] = {}
    for event in events:
        if event["eventType"] == "order_created" and event.get("expiresAt"):
            due[event["orderId"]] = _epoch_s(event["expiresAt"])
        elif event.get("reason") == "payment_timeout" and event["eventId"] in queued_at:
            expired[event["orderId"]] = queued_at[event["eventId"]]
    return [
        (expired[order_id] - due_at) * 1000
        for order_id, due_at in due.items()
        if order_id in expired and expiring_from <= due_at < expiring_until
    ]


def _epoch_s(timestamp: str) -> float:
    return datetime.fromisoformat(timestamp.replace("Z", "+00:00")).timestamp()
