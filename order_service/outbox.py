"""The transactional outbox's far side: relaying committed events to SQS, at least once."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import boto3
import structlog
from botocore.config import Config
from botocore.exceptions import ClientError
from prometheus_client import Counter

from common.db import Database, isoformat, utcnow
from common.pruning import delete_before
from order_service.outbox_repository import OutboxEvent, OutboxRepository

log = structlog.get_logger(__name__)
EVENTS_PARKED = Counter(
    "shop_outbox_events_parked_total",
    "Outbox events parked, never to be claimed again, after SQS refused them too often.",
)


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
        # Readiness asks through this one: one try, a second each way, well inside a probe's
        # timeout even when the queue's address black-holes packets.
        self._probe: Any = boto3.client(
            "sqs",
            endpoint_url=endpoint_url,
            region_name=region,
            config=Config(connect_timeout=1, read_timeout=1, retries={"max_attempts": 1}),
        )
        self._url: str | None = None

    @property
    def url(self) -> str:
        if self._url is None:
            self._url = str(self._client.get_queue_url(QueueName=self._queue_name)["QueueUrl"])
        return self._url

    def ping(self) -> None:
        url = self._url or self._probe.get_queue_url(QueueName=self._queue_name)["QueueUrl"]
        self._probe.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])

    def send(self, events: Sequence[OutboxEvent]) -> Sent:
        """One SendMessageBatch call; says which events SQS accepted and which it refused
        for what they are. When SQS refuses the whole batch for one event's sake (a batch
        over 256 KiB), each is sent alone, so only that one is refused. A queue that cannot
        be reached raises: that is no event's fault."""
        entries = [
            {
                "Id": str(index),
                "MessageBody": event.payload,
                "MessageAttributes": _attributes(event),
            }
            for index, event in enumerate(events)
        ]
        try:
            answer = self._client.send_message_batch(QueueUrl=self.url, Entries=entries)
        except ClientError as exc:
            if _error_code(exc.response.get("Error", {})) not in _CONTENT_REFUSALS:
                raise
            log.warning("event_batch_refused", error=str(exc), events=len(events))
            if len(events) == 1:
                return Sent(accepted=[], refused=list(events))
            return Sent.combined([self.send([event]) for event in events])
        refused = []
        for failure in answer.get("Failed", []):
            event = events[int(failure["Id"])]
            log.warning("event_not_accepted", event_id=event.id, **failure)
            if failure.get("SenderFault") or _error_code(failure) in _CONTENT_REFUSALS:
                refused.append(event)
        return Sent([events[int(ok["Id"])].id for ok in answer.get("Successful", [])], refused)


@dataclass(frozen=True)
class Sent:
    """What became of a batch: the ids SQS accepted, and the events it refused for good
    (their content, never an outage); any other event is simply tried again."""

    accepted: list[str]
    refused: list[OutboxEvent]

    @staticmethod
    def combined(parts: Sequence[Sent]) -> Sent:
        return Sent(
            [event_id for part in parts for event_id in part.accepted],
            [event for part in parts for event in part.refused],
        )


# The errors SQS gives a message it will never take as it is (with or without the prefix
# "AWS.SimpleQueueService."); SenderFault says the same on a failed batch entry.
_CONTENT_REFUSALS = {"BatchRequestTooLong", "InvalidMessageContents", "MessageTooLong"}


def _error_code(error: Mapping[str, Any]) -> str:
    return str(error.get("Code", "")).removeprefix("AWS.SimpleQueueService.")


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
        max_attempts: int = 10,
        clock: Callable[[], datetime] = utcnow,
    ) -> None:
        self._db = db
        self._queue = queue
        self._batch_size = batch_size
        self._max_attempts = max_attempts
        self._clock = clock

    def relay_batch(self) -> int:
        """Sends one batch; returns how many events it sent (0 when nothing waits). An event
        SQS refuses `max_attempts` times is parked: never claimed again, so it cannot stay
        at the head of every claim for ever (`outbox-status` counts parked events)."""
        with self._db.transaction() as connection:
            outbox = OutboxRepository(connection)
            events = outbox.claim_unsent(self._batch_size)
            if not events:
                return 0
            sent = self._queue.send(events)
            now = self._clock()
            outbox.mark_sent(sent.accepted, now)
            if sent.refused:
                parked = outbox.count_refusals(sent.refused, now, max_attempts=self._max_attempts)
                for event in parked:
                    EVENTS_PARKED.inc()
                    log.error(
                        "event_parked",
                        event_id=event.id,
                        event_type=event.event_type,
                        order_id=event.order_id,
                        attempts=event.attempts + 1,
                    )
        return len(sent.accepted)

    def prune(self, *, retention: timedelta, slice_size: int = 1000) -> int:
        """Deletes every sent event older than `retention`, one short transaction per slice,
        so the table stays bounded however fast events arrive and no lock is held for long."""
        return delete_before(
            self._db,
            OutboxRepository,
            OutboxRepository.delete_sent_before,
            self._clock() - retention,
            slice_size=slice_size,
        )


@dataclass(frozen=True)
class ParkedEvent:
    event_id: str
    event_type: str
    order_id: str
    attempts: int
    parked_at: datetime


@dataclass(frozen=True)
class OutboxStatus:
    pending: int
    oldest_pending_at: datetime | None
    last_sent_at: datetime | None
    parked: int
    # The first parked events (at most SHOWN_PARKED), for an operator to look into.
    first_parked: list[ParkedEvent]

    def report(self) -> dict[str, object]:
        """What `outbox-status --json` prints, in the contract's camelCase."""
        return {
            "pending": self.pending,
            "oldestPendingAt": _iso_or_none(self.oldest_pending_at),
            "lastSentAt": _iso_or_none(self.last_sent_at),
            "parked": self.parked,
            "parkedEvents": [
                {
                    "eventId": event.event_id,
                    "eventType": event.event_type,
                    "orderId": event.order_id,
                    "attempts": event.attempts,
                    "parkedAt": isoformat(event.parked_at),
                }
                for event in self.first_parked
            ],
        }


SHOWN_PARKED = 10


def outbox_status(db: Database) -> OutboxStatus:
    with db.transaction() as connection:
        outbox = OutboxRepository(connection)
        pending, oldest, last_sent, parked = outbox.status()
        first_parked = [
            ParkedEvent(event.id, event.event_type, event.order_id, event.attempts, parked_at)
            for event, parked_at in outbox.parked(SHOWN_PARKED)
        ]
    return OutboxStatus(pending, oldest, last_sent, parked, first_parked)


def _iso_or_none(value: datetime | None) -> str | None:
    return isoformat(value) if value is not None else None
