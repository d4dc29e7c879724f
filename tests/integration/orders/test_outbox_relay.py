"""The relay against a real SQS endpoint (LocalStack) and the real order database."""

from __future__ import annotations

import json
import threading
from collections import Counter

import pytest
import sqlalchemy as sa
from botocore.exceptions import EndpointConnectionError

from order_service.outbox import EventQueue, OutboxRelay, outbox_status
from order_service.tables import outbox
from tests.integration.orders.conftest import CUSTOMER, order_of
from tests.support.events import EVENT_BODY_FIELDS


def drain(sqs_client, queue_url: str) -> list[dict]:
    messages: list[dict] = []
    while True:
        got = sqs_client.receive_message(
            QueueUrl=queue_url,
            MaxNumberOfMessages=10,
            WaitTimeSeconds=1,
            MessageAttributeNames=["All"],
        ).get("Messages", [])
        if not got:
            return messages
        messages += got
        sqs_client.delete_message_batch(
            QueueUrl=queue_url,
            Entries=[
                {"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]} for i, m in enumerate(got)
            ],
        )


@pytest.fixture
def events(local_sqs, monkeypatch) -> tuple[EventQueue, str]:
    """A queue of this test's own, and its URL for reading what arrived."""
    for name, value in local_sqs.environment().items():
        monkeypatch.setenv(name, value)
    name, url = local_sqs.private_queue("relay-test")
    return EventQueue(name, endpoint_url=local_sqs.endpoint, region="us-east-1"), url


@pytest.fixture
def queue(events) -> EventQueue:
    return events[0]


@pytest.fixture
def received(events, local_sqs):
    """Drains the test's queue: every message that arrived since the last call."""
    return lambda: drain(local_sqs.client(), events[1])


@pytest.fixture
def relay(order_db, queue) -> OutboxRelay:
    return OutboxRelay(order_db, queue)


def relay_everything(relay: OutboxRelay) -> int:
    total = 0
    while sent := relay.relay_batch():
        total += sent
    return total


def test_events_arrive_with_their_body_and_attributes(
    orders, new_product, relay, received, order_db
):
    relay_everything(relay)
    received()
    order = orders.place_order(order_of((new_product(), 1)), CUSTOMER).order
    orders.pay_order(order.id, CUSTOMER)

    assert relay_everything(relay) == 2
    messages = received()
    bodies = [json.loads(m["Body"]) for m in messages]
    assert sorted(b["eventType"] for b in bodies) == ["order_created", "order_paid"]
    for message, body in zip(messages, bodies, strict=True):
        assert message["MessageAttributes"]["eventType"]["StringValue"] == body["eventType"]
        assert body["orderId"] == order.id
        assert set(body) == EVENT_BODY_FIELDS
    assert outbox_status(order_db).pending == 0


def test_an_unreachable_queue_keeps_events_until_it_is_back(orders, new_product, order_db, queue):
    unreachable = OutboxRelay(
        order_db, EventQueue("order-events", endpoint_url="http://127.0.0.1:9", region="us-east-1")
    )
    order = orders.place_order(order_of((new_product(), 1)), CUSTOMER).order
    with pytest.raises(EndpointConnectionError):
        unreachable.relay_batch()
    with order_db.transaction() as connection:
        sent_at = connection.execute(
            sa.select(outbox.c.sent_at).where(outbox.c.order_id == order.id)
        ).scalar_one()
    assert sent_at is None
    assert outbox_status(order_db).pending >= 1


def test_relays_in_parallel_send_each_event_once(orders, new_product, order_db, queue, received):
    relay_everything(OutboxRelay(order_db, queue))
    received()
    product = new_product(stock=100)
    placed = {orders.place_order(order_of((product, 1)), CUSTOMER).order.id for _ in range(40)}

    relays = [OutboxRelay(order_db, queue, batch_size=3) for _ in range(4)]
    threads = [threading.Thread(target=relay_everything, args=(r,)) for r in relays]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    received = Counter(json.loads(m["Body"])["orderId"] for m in received())
    assert set(received) == placed
    assert set(received.values()) == {1}


def test_old_sent_events_are_pruned_and_unsent_ones_never(orders, new_product, order_db, relay):
    from datetime import timedelta

    order = orders.place_order(order_of((new_product(), 1)), CUSTOMER).order
    relay.prune(retention=timedelta(0))
    with order_db.transaction() as connection:
        kept = connection.execute(
            sa.select(sa.func.count()).where(outbox.c.order_id == order.id)
        ).scalar_one()
    assert kept == 1
    relay_everything(relay)
    relay.prune(retention=timedelta(0))
    with order_db.transaction() as connection:
        assert connection.execute(sa.select(sa.func.count()).select_from(outbox)).scalar_one() == 0


def test_pruning_goes_on_until_every_old_sent_event_is_gone(orders, new_product, order_db, relay):
    from datetime import timedelta

    product = new_product(stock=100)
    for _ in range(5):
        orders.place_order(order_of((product, 1)), CUSTOMER)
    relay_everything(relay)

    assert relay.prune(retention=timedelta(0), slice_size=2) >= 5
    with order_db.transaction() as connection:
        sent = connection.execute(
            sa.select(sa.func.count()).where(outbox.c.sent_at.is_not(None))
        ).scalar_one()
    assert sent == 0
