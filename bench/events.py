"""A downstream consumer that drains `order-events` as a real one would, recording each event."""

from __future__ import annotations

import json
import threading
import time
from collections import defaultdict
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from devstack.sqs import QUEUE_NAME, local_sqs_client

# SQS answers at most 10 messages per receive.
_FULL_BATCH = 10


class EventDrain:
    """`fill_wait_s`: after a receive that was not full, wait this long before the next, so
    events accumulate into full batches. A downstream does this to spend one receive and one
    delete per 10 events; here it also keeps the consumer from taking the CPU that the system
    under test shares with it. The relay lag is measured where events are sent, not here."""

    def __init__(self, endpoint: str, *, threads: int = 2, fill_wait_s: float = 0.5) -> None:
        self._sqs = local_sqs_client(endpoint)
        self._queue_url = self._sqs.get_queue_url(QueueName=QUEUE_NAME)["QueueUrl"]
        self._stop = threading.Event()
        self._fill_wait_s = fill_wait_s
        self._lock = threading.Lock()
        self.by_event_id: dict[str, dict[str, Any]] = {}
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

    def _drain(self) -> None:
        while not self._stop.is_set():
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
            QueueUrl=self._queue_url, MaxNumberOfMessages=_FULL_BATCH, WaitTimeSeconds=1
        ).get("Messages", [])
        if messages:
            with self._lock:
                for message in messages:
                    event = json.loads(message["Body"])
                    self.by_event_id[event["eventId"]] = event
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
