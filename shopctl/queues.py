"""`order-events` and its dead-letter queue: reading events and moving parked ones back."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from typing import Any

import boto3
from botocore.config import Config

from shopctl.config import LOCAL_CREDENTIALS, QueueSettings
from shopctl.errors import ShopctlError

# One long poll; short enough that Ctrl-C and --idle-timeout are noticed promptly.
LONG_POLL_S = 5
SQS_BATCH = 10


@dataclass(frozen=True)
class Event:
    message_id: str
    receipt_handle: str
    raw_body: str
    attributes: dict[str, str]

    @property
    def body(self) -> dict[str, Any]:
        try:
            parsed = json.loads(self.raw_body)
        except ValueError:
            return {}
        return parsed if isinstance(parsed, dict) else {}

    def as_json(self) -> str:
        """The raw message for `--json`: its body as sent, plus id and attributes."""
        return json.dumps(
            {"messageId": self.message_id, "attributes": self.attributes, "body": self.body}
            if self.body
            else {
                "messageId": self.message_id,
                "attributes": self.attributes,
                "raw": self.raw_body,
            },
            ensure_ascii=False,
        )


def sqs_client(settings: QueueSettings) -> Any:
    """A client for the configured endpoint; a local endpoint takes LocalStack's dummy keys."""
    options: dict[str, Any] = {
        "config": Config(
            connect_timeout=2, read_timeout=LONG_POLL_S + 10, retries={"total_max_attempts": 2}
        ),
        "region_name": os.environ.get(
            "AWS_DEFAULT_REGION", LOCAL_CREDENTIALS["AWS_DEFAULT_REGION"]
        ),
    }
    options["endpoint_url"] = settings.endpoint
    if not settings.endpoint.endswith(".amazonaws.com") and not os.environ.get("AWS_ACCESS_KEY_ID"):
        options["aws_access_key_id"] = LOCAL_CREDENTIALS["AWS_ACCESS_KEY_ID"]
        options["aws_secret_access_key"] = LOCAL_CREDENTIALS["AWS_SECRET_ACCESS_KEY"]
    return boto3.client("sqs", **options)


def queue_url(client: Any, name: str) -> str:
    return str(client.get_queue_url(QueueName=name)["QueueUrl"])


def receive(
    client: Any, url: str, *, wait_s: int = LONG_POLL_S, max_messages: int = SQS_BATCH
) -> list[Event]:
    answer = client.receive_message(
        QueueUrl=url,
        MaxNumberOfMessages=max_messages,
        WaitTimeSeconds=wait_s,
        MessageAttributeNames=["All"],
    )
    return [_event(message) for message in answer.get("Messages", [])]


def delete(client: Any, url: str, events: list[Event]) -> None:
    if events:
        client.delete_message_batch(
            QueueUrl=url,
            Entries=[
                {"Id": str(index), "ReceiptHandle": event.receipt_handle}
                for index, event in enumerate(events)
            ],
        )


def redrive(client: Any, source_url: str, target_url: str) -> int:
    """Moves every message from source to target, body and attributes intact; returns how many.

    Each batch is deleted from the source only after SQS accepted it at the target, so a
    failure part-way leaves duplicates (consumers de-duplicate by eventId), never a loss.
    """
    moved = 0
    while True:
        batch = client.receive_message(
            QueueUrl=source_url,
            MaxNumberOfMessages=SQS_BATCH,
            WaitTimeSeconds=1,
            MessageAttributeNames=["All"],
        ).get("Messages", [])
        if not batch:
            return moved
        sent = client.send_message_batch(
            QueueUrl=target_url,
            Entries=[
                {
                    "Id": str(index),
                    "MessageBody": message["Body"],
                    "MessageAttributes": message.get("MessageAttributes", {}),
                }
                for index, message in enumerate(batch)
            ],
        )
        accepted = {entry["Id"] for entry in sent.get("Successful", [])}
        done = [message for index, message in enumerate(batch) if str(index) in accepted]
        if done:
            client.delete_message_batch(
                QueueUrl=source_url,
                Entries=[
                    {"Id": str(index), "ReceiptHandle": message["ReceiptHandle"]}
                    for index, message in enumerate(done)
                ],
            )
        moved += len(done)
        if len(done) < len(batch):
            failed = sent.get("Failed", [{}])[0]
            raise ShopctlError(f"SQS refused a message: {failed.get('Message', failed)}")


def _event(message: dict[str, Any]) -> Event:
    attributes = {
        name: str(value.get("StringValue", value.get("BinaryValue", "")))
        for name, value in message.get("MessageAttributes", {}).items()
    }
    return Event(message["MessageId"], message["ReceiptHandle"], message["Body"], attributes)
