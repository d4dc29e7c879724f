"""The transactional outbox's far side: relaying committed events to SQS, at least once."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import boto3
import structlog
from botocore.config import Config

from common.db import Database, utcnow
from order_service.outbox_repository import OutboxEvent, OutboxRepository

log = structlog.get_logger(__name__)


class EventQueue:
    """The `order-events` queue; its URL is looked up once, on first use."""

    def __init__(self, queue_name: str, *, endpoint_url: str | None, region: str) -> None:
        self._queue_name = queue_name
        self._client: Any = boto3.client(
            "sqs",
            endpoint_url=endpoint_url,
            region_name=region,
            # Short timeouts and few retries: the relay has its own backoff, and a readiness
            # probe must answer quickly.
            config=Config(
                connect_timeout=2, read_timeout=5, retries={"max_attempts": 2, "mode": "standard"}
            ),
        )
        self._url: str | None = None

    @property
    def url(self) -> str:
        if self._url is None:
            self._url = str(self._client.get_queue_url(QueueName=self._queue_name)["QueueUrl"])
        return self._url

    def ping(self) -> None:
        self._client.get_queue_attributes(QueueUrl=self.url, AttributeNames=["QueueArn"])

    def send(self, events: Sequence[OutboxEvent]) -> list[str]:
        """One SendMessageBatch call; returns the ids of the events SQS accepted."""
        entries = [
            {
                "Id": str(index),
                "MessageBody": event.payload,
                "MessageAttributes": _attributes(event),
            }
            for index, event in enumerate(events)
        ]
        answer = self._client.send_message_batch(QueueUrl=self.url, Entries=entries)
        for failure in answer.get("Failed", []):
            log.warning("event_not_accepted", event_id=events[int(failure["Id"])].id, **failure)
        return [events[int(ok["Id"])].id for ok in answer.get("Successful", [])]


def _attributes(event: OutboxEvent) -> dict[str, dict[str, str]]:
    attributes = {"eventType": {"DataType": "String", "StringValue": event.event_type}}
    if event.request_id:
        attributes["requestId"] = {"DataType": "String", "StringValue": event.request_id}
    return attributes


class OutboxRelay:
    """Claims unsent events with SKIP LOCKED, so any number of relays share the work without
    sending one event twice; holds the claim while sending, so a crash mid-send leaves the
    events unsent (to be sent again: at least once, never lost)."""

    def __init__(
        self,
        db: Database,
        queue: EventQueue,
        *,
        batch_size: int = 10,
        clock: Callable[[], datetime] = utcnow,
    ) -> None:
        self._db = db
        self._queue = queue
        self._batch_size = batch_size
        self._clock = clock

    def relay_batch(self) -> int:
        """Sends one batch; returns how many events it sent (0 when nothing waits)."""
        with self._db.transaction() as connection:
            outbox = OutboxRepository(connection)
            events = outbox.claim_unsent(self._batch_size)
            if not events:
                return 0
            sent = self._queue.send(events)
            outbox.mark_sent(sent, self._clock())
        return len(sent)

    def prune(self, *, retention: timedelta, slice_size: int = 1000) -> int:
        """Deletes every sent event older than `retention`, one short transaction per slice,
        so the table stays bounded however fast events arrive and no lock is held for long."""
        cutoff = self._clock() - retention
        deleted = 0
        while True:
            with self._db.transaction() as connection:
                removed = OutboxRepository(connection).delete_sent_before(cutoff, slice_size)
            deleted += removed
            if removed < slice_size:
                return deleted


@dataclass(frozen=True)
class OutboxStatus:
    pending: int
    oldest_pending_at: datetime | None
    last_sent_at: datetime | None


def outbox_status(db: Database) -> OutboxStatus:
    with db.transaction() as connection:
        return OutboxStatus(*OutboxRepository(connection).status())
