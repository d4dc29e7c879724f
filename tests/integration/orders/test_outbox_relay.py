"""The relay against a real SQS endpoint (LocalStack) and the real order database."""

from __future__ import annotations

import json
import threading
from collections import Counter

import pytest
import sqlalchemy as sa
from botocore.exceptions import EndpointConnectionError
from prometheus_client import REGISTRY
from structlog.testing import capture_logs

from common.db import utcnow
from common.ids import new_id
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
    # An outage is no event's fault: nothing is counted towards parking.
    with order_db.transaction() as connection:
        attempts = connection.execute(
            sa.select(outbox.c.attempts).where(outbox.c.order_id == order.id)
        ).scalar_one()
    assert attempts == 0


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


def insert_event(order_db, payload: str) -> str:
    event_id = new_id()
    with order_db.transaction() as connection:
        connection.execute(
            sa.insert(outbox).values(
                id=event_id,
                event_type="order_created",
                order_id=new_id(),
                payload=payload,
                created_at=utcnow(),
            )
        )
    return event_id


def outbox_row(order_db, event_id: str):
    with order_db.transaction() as connection:
        return connection.execute(sa.select(outbox).where(outbox.c.id == event_id)).one()


def forget_event(order_db, event_id: str) -> None:
    """A parked row stays for an operator; this test's own is removed after it."""
    with order_db.transaction() as connection:
        connection.execute(sa.delete(outbox).where(outbox.c.id == event_id))


def parked_total() -> float:
    return REGISTRY.get_sample_value("shop_outbox_events_parked_total") or 0.0


def test_an_event_sqs_refuses_is_parked_after_its_attempts_and_never_claimed_again(
    orders, new_product, order_db, queue, received
):
    relay = OutboxRelay(order_db, queue, max_attempts=3)
    relay_everything(relay)
    received()
    # SQS takes no control characters in a body: a message it refuses however often it is sent.
    poison = insert_event(order_db, '{"eventType":"order_created","note":"\x01"}')
    order = orders.place_order(order_of((new_product(), 1)), CUSTOMER).order
    parked_before = parked_total()
    try:
        with capture_logs() as logs:
            assert relay.relay_batch() >= 1  # the good event goes out beside the refused one
            relay.relay_batch()
            assert outbox_row(order_db, poison).parked_at is None
            relay.relay_batch()
        row = outbox_row(order_db, poison)
        assert (row.attempts, row.sent_at) == (3, None)
        assert row.parked_at is not None
        assert parked_total() == parked_before + 1
        assert [log["event_id"] for log in logs if log["event"] == "event_parked"] == [poison]

        # Parked: the claim passes it by, so nothing waits behind it.
        assert relay.relay_batch() == 0
        assert outbox_row(order_db, poison).attempts == 3
        later = orders.place_order(order_of((new_product(), 1)), CUSTOMER).order
        assert relay_everything(relay) == 1
        arrived = [json.loads(m["Body"])["orderId"] for m in received()]
        assert sorted(arrived) == sorted([order.id, later.id])

        status = outbox_status(order_db)
        assert status.pending == 0
        assert status.parked >= 1
        assert poison in [event.event_id for event in status.first_parked]
    finally:
        forget_event(order_db, poison)


def test_a_batch_too_long_for_sqs_is_sent_one_by_one_and_nothing_is_parked(
    order_db, queue, received
):
    relay = OutboxRelay(order_db, queue, max_attempts=1)
    relay_everything(relay)
    received()
    # Ten bodies of 40 kB each: fine alone, 400 kB together, past SQS's 256 KiB for a batch.
    ids = [insert_event(order_db, json.dumps({"padding": "x" * 40_000})) for _ in range(10)]
    assert relay.relay_batch() == 10
    assert len(received()) == 10
    for event_id in ids:
        row = outbox_row(order_db, event_id)
        assert (row.attempts, row.parked_at) == (0, None)
        assert row.sent_at is not None
