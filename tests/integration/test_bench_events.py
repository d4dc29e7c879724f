"""The bench's event consumer against a real SQS endpoint: paused while a slice is measured,
it leaves the events on the queue, and takes them all once the slice is over."""

from __future__ import annotations

import json
import time

from bench.events import EventDrain
from tests.support.events import eventually

# Longer than the consumer's long poll (WaitTimeSeconds=1): a receive already on its way when
# the pause began has ended by then.
_IN_FLIGHT_RECEIVE_ENDS_S = 1.5


def test_no_event_is_received_while_paused_and_every_one_after(local_sqs):
    name, url = local_sqs.private_queue("bench-drain")
    drain = EventDrain(local_sqs.endpoint, queue_name=name, fill_wait_s=0.05)
    drain.start()
    try:
        with drain.paused():
            time.sleep(_IN_FLIGHT_RECEIVE_ENDS_S)
            for n in range(12):
                body = {"eventId": f"e{n}", "eventType": "order_created", "orderId": f"o{n}"}
                local_sqs.client().send_message(QueueUrl=url, MessageBody=json.dumps(body))
            time.sleep(_IN_FLIGHT_RECEIVE_ENDS_S)
            assert drain.deliveries == 0
        eventually(lambda: drain.deliveries == 12, what="the 12 events, once resumed")
        assert sorted(drain.events_by_order()) == sorted(f"o{n}" for n in range(12))
    finally:
        drain.stop()
