"""A consumer of `order-events` for tests: drains the queue in a thread, keeps every delivery.

It outlives an SQS outage (a test stops LocalStack on purpose): errors are retried, not raised.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from devstack.sqs import local_sqs_client

# Every field an order event's body has, per the contract (API.md, "Events"): the order's
# state, with its items' names, its shipping address copy and its payment deadline.
EVENT_BODY_FIELDS = {
    "eventId",
    "eventType",
    "occurredAt",
    "orderId",
    "userId",
    "status",
    "totalAmount",
    "items",
    "shippingAddress",
    "expiresAt",
}


@dataclass(frozen=True)
class Delivery:
    """One received message: its parsed body and its string message attributes."""

    body: dict[str, Any]
    attributes: dict[str, str]

    @property
    def event_id(self) -> str:
        return str(self.body["eventId"])

    @property
    def event_type(self) -> str:
        return str(self.body["eventType"])


class EventCollector:
    def __init__(self, endpoint: str, queue_url: str) -> None:
        self._endpoint = endpoint
        self._queue_url = queue_url
        self._lock = threading.Lock()
        self._deliveries: list[Delivery] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._drain, name="order-events", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=10)

    def _drain(self) -> None:
        sqs = local_sqs_client(self._endpoint)
        while not self._stop.is_set():
            try:
                messages = sqs.receive_message(
                    QueueUrl=self._queue_url,
                    MaxNumberOfMessages=10,
                    WaitTimeSeconds=1,
                    MessageAttributeNames=["All"],
                ).get("Messages", [])
                if not messages:
                    continue
                with self._lock:
                    self._deliveries.extend(_delivery(message) for message in messages)
                sqs.delete_message_batch(
                    QueueUrl=self._queue_url,
                    Entries=[
                        {"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]}
                        for i, m in enumerate(messages)
                    ],
                )
            except Exception:
                # The endpoint is down or restarting; a message not deleted comes back later.
                time.sleep(0.2)

    def deliveries(self, order_id: str | None = None) -> list[Delivery]:
        with self._lock:
            everything = list(self._deliveries)
        return [d for d in everything if order_id is None or d.body.get("orderId") == order_id]

    def events(self, order_id: str) -> dict[str, Delivery]:
        """The distinct events of one order, by eventId (what a de-duplicating consumer keeps)."""
        return {d.event_id: d for d in self.deliveries(order_id)}

    def event_types(self, order_id: str) -> list[str]:
        return sorted(d.event_type for d in self.events(order_id).values())

    def wait_for_types(
        self, order_id: str, expected: list[str], *, timeout_s: float = 15.0
    ) -> dict[str, Delivery]:
        """Waits until the order's distinct events have exactly the `expected` types."""
        eventually(
            lambda: self.event_types(order_id) == sorted(expected),
            timeout_s=timeout_s,
            what=f"{expected} for order {order_id} (have {self.event_types(order_id)})",
        )
        return self.events(order_id)


def eventually(condition: Callable[[], bool], *, timeout_s: float = 15.0, what: str) -> None:
    """Polls `condition` until it holds; fails naming `what` when `timeout_s` runs out."""
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout_s:.0f}s waiting for {what}")
        time.sleep(0.1)


def _delivery(message: dict[str, Any]) -> Delivery:
    attributes = {
        name: str(value.get("StringValue"))
        for name, value in message.get("MessageAttributes", {}).items()
    }
    return Delivery(json.loads(message["Body"]), attributes)
