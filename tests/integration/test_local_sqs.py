"""The SQS endpoint the event tests rely on: real queues, a redrive policy, round trips."""

from __future__ import annotations

import json

from devstack import sqs


def test_messages_round_trip_with_attributes(local_sqs):
    client = local_sqs.client()
    _, queue_url = local_sqs.private_queue("round-trip")
    client.send_message(
        QueueUrl=queue_url,
        MessageBody=json.dumps({"eventType": "order_created"}),
        MessageAttributes={"eventType": {"DataType": "String", "StringValue": "order_created"}},
    )
    received = client.receive_message(
        QueueUrl=queue_url, MessageAttributeNames=["All"], WaitTimeSeconds=5
    )["Messages"]
    assert json.loads(received[0]["Body"]) == {"eventType": "order_created"}
    assert received[0]["MessageAttributes"]["eventType"]["StringValue"] == "order_created"
    client.delete_message(QueueUrl=queue_url, ReceiptHandle=received[0]["ReceiptHandle"])


def test_order_events_dead_letters_into_its_dlq(local_sqs):
    attributes = local_sqs.client().get_queue_attributes(
        QueueUrl=local_sqs.queue_url, AttributeNames=["RedrivePolicy"]
    )["Attributes"]
    policy = json.loads(attributes["RedrivePolicy"])
    assert policy["deadLetterTargetArn"].endswith(sqs.DEAD_LETTER_QUEUE_NAME)
    assert int(policy["maxReceiveCount"]) == sqs.MAX_RECEIVES_BEFORE_DLQ
