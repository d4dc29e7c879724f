"""shopctl as a real process against a real LocalStack and real databases: no fakes."""

from __future__ import annotations

import datetime as dt
import json
import os
import signal
import subprocess
import sys
import time
import uuid

import jwt
import pytest
import requests
import sqlalchemy as sa

from order_service.tables import outbox
from tests.e2e.shopctl.conftest import closed_url, shopctl
from tests.support.processes import run_cli

pytestmark = pytest.mark.e2e


def _event(event_type: str) -> dict:
    return {
        "eventId": str(uuid.uuid4()),
        "eventType": event_type,
        "occurredAt": "2026-11-27T04:00:00.000000Z",
        "orderId": str(uuid.uuid4()),
        "userId": str(uuid.uuid4()),
        "status": "PENDING",
        "totalAmount": "12.50",
        "items": [{"productId": str(uuid.uuid4()), "quantity": 1, "price": "12.50"}],
    }


def _send(client, url: str, body: dict) -> None:
    client.send_message(
        QueueUrl=url,
        MessageBody=json.dumps(body),
        MessageAttributes={"eventType": {"DataType": "String", "StringValue": body["eventType"]}},
    )


def _drain(client, url: str) -> list[dict]:
    seen: list[dict] = []
    while True:
        batch = client.receive_message(
            QueueUrl=url, MaxNumberOfMessages=10, WaitTimeSeconds=1, MessageAttributeNames=["All"]
        ).get("Messages", [])
        if not batch:
            return seen
        seen += batch
        for message in batch:
            client.delete_message(QueueUrl=url, ReceiptHandle=message["ReceiptHandle"])


def test_events_tail_json_prints_each_message_raw_and_consumes_it(local_sqs, queue_pair):
    sent = [_event("order_created"), _event("order_paid")]
    for body in sent:
        _send(queue_pair.client, queue_pair.url, body)

    done = shopctl(
        "events",
        "tail",
        "--json",
        "--idle-timeout",
        "2",
        env=queue_pair.environment(local_sqs.endpoint),
    )

    assert done.returncode == 0, done.stderr
    printed = [json.loads(line) for line in done.stdout.splitlines()]
    assert [message["body"] for message in printed] == sent
    assert printed[0]["attributes"] == {"eventType": "order_created"}
    assert "consuming" in done.stderr
    assert _drain(queue_pair.client, queue_pair.url) == []


def test_events_tail_count_prints_one_line_per_event_and_leaves_the_rest(local_sqs, queue_pair):
    bodies = [_event("order_cancelled"), _event("order_paid"), _event("order_paid")]
    for body in bodies:
        _send(queue_pair.client, queue_pair.url, body)

    done = shopctl("events", "tail", "--count", "1", env=queue_pair.environment(local_sqs.endpoint))

    assert done.returncode == 0, done.stderr
    assert done.stdout.count("\n") == 1
    # A standard queue does not promise order: any one of the three, once.
    assert sum(body["orderId"][-12:] in done.stdout for body in bodies) == 1
    # What it did not print, it did not take: the other two are still there for a consumer.
    left = queue_pair.client.get_queue_attributes(
        QueueUrl=queue_pair.url,
        AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"],
    )["Attributes"]
    assert int(left["ApproximateNumberOfMessages"]) == 2
    assert int(left["ApproximateNumberOfMessagesNotVisible"]) == 0


def test_dlq_redrive_moves_parked_messages_back_with_their_attributes(local_sqs, queue_pair):
    parked = [_event("order_created") for _ in range(12)]
    for body in parked:
        _send(queue_pair.client, queue_pair.dlq_url, body)

    done = shopctl("dlq", "redrive", env=queue_pair.environment(local_sqs.endpoint))

    assert done.returncode == 0, done.stderr
    assert f"moved 12 message(s) from {queue_pair.name}-dlq to {queue_pair.name}" in done.stdout
    back = _drain(queue_pair.client, queue_pair.url)
    assert sorted(json.loads(m["Body"])["eventId"] for m in back) == sorted(
        body["eventId"] for body in parked
    )
    assert all(m["MessageAttributes"]["eventType"]["StringValue"] == "order_created" for m in back)
    assert _drain(queue_pair.client, queue_pair.dlq_url) == []


def test_outbox_status_counts_pending_and_names_the_oldest_and_last_sent(databases):
    url = databases.create("shopctl_outbox")
    run_cli("order_service", "prestart", env={"ORDER_DATABASE_URL": url})
    base = dt.datetime(2026, 11, 27, 4, 0, 0, 123456, tzinfo=dt.UTC)
    parked_id, parked_order = str(uuid.uuid4()), str(uuid.uuid4())
    rows = [
        (str(uuid.uuid4()), base, None, None),
        (str(uuid.uuid4()), base + dt.timedelta(seconds=5), None, None),
        (str(uuid.uuid4()), base - dt.timedelta(minutes=1), base - dt.timedelta(seconds=30), None),
        # SQS refused it ten times: parked, not pending, and listed for the operator.
        (parked_id, base - dt.timedelta(minutes=2), None, base - dt.timedelta(minutes=1)),
    ]
    engine = sa.create_engine(url)
    with engine.begin() as connection:
        for event_id, created_at, sent_at, parked_at in rows:
            connection.execute(
                sa.insert(outbox).values(
                    id=event_id,
                    event_type="order_created",
                    order_id=parked_order if event_id == parked_id else str(uuid.uuid4()),
                    payload="{}",
                    created_at=created_at,
                    sent_at=sent_at,
                    attempts=10 if parked_at else 0,
                    parked_at=parked_at,
                )
            )
    engine.dispose()

    done = shopctl("outbox", "status", "--json", env={"ORDER_DATABASE_URL": url})
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == {
        "pending": 2,
        "oldestPendingAt": "2026-11-27T04:00:00.123456Z",
        "lastSentAt": "2026-11-27T03:59:30.123456Z",
        "parked": 1,
        "parkedEvents": [
            {
                "eventId": parked_id,
                "eventType": "order_created",
                "orderId": parked_order,
                "attempts": 10,
                "parkedAt": "2026-11-27T03:59:00.123456Z",
            }
        ],
    }
    pretty = shopctl("outbox", "status", "--database-url", url, env={})
    lines = pretty.stdout.splitlines()
    assert lines[0] == "pending        2"
    assert lines[3] == "parked         1"
    assert parked_id in lines[4]


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (("demo",), "the user service does not answer at http://127.0.0.1:"),
        (("events", "tail"), "cannot reach SQS at http://127.0.0.1:"),
        (("dlq", "redrive"), "cannot reach SQS at http://127.0.0.1:"),
        (("outbox", "status"), "no order database at /nonexistent/order_service.db"),
    ],
)
def test_an_unreachable_dependency_is_one_clear_line_and_a_failing_exit(args, expected):
    done = shopctl(*args, env={})

    assert done.returncode != 0
    assert "Traceback" not in done.stderr + done.stdout
    assert done.stderr.strip().count("\n") <= 1, done.stderr
    assert expected in done.stderr


def test_an_unreachable_order_database_server_is_one_clear_line():
    port = closed_url().rsplit(":", 1)[1]
    done = shopctl(
        "outbox", "status", env={"ORDER_DATABASE_URL": f"mysql+pymysql://root@127.0.0.1:{port}/x"}
    )

    assert done.returncode != 0
    assert "Traceback" not in done.stderr
    assert done.stderr.startswith("Error: database error:")


def test_every_command_has_help():
    for args in (
        (),
        ("up",),
        ("demo",),
        ("events",),
        ("events", "tail"),
        ("dlq", "redrive"),
        ("outbox", "status"),
        ("users", "create-admin"),
    ):
        done = shopctl(*args, "--help", env={})
        assert done.returncode == 0, (args, done.stderr)
        assert "Usage: shopctl" in done.stdout


def test_users_create_admin_makes_an_account_that_logs_in_as_admin(user_service, user_service_env):
    username = f"boss-{uuid.uuid4().hex[:8]}"
    done = shopctl(
        "users",
        "create-admin",
        "--username",
        username,
        "--password",
        "boss-password-1",
        env={
            "USER_DATABASE_URL": user_service_env["USER_DATABASE_URL"],
            "JWT_PRIVATE_KEY": user_service_env["JWT_PRIVATE_KEY"],
        },
    )
    assert done.returncode == 0, done.stderr
    assert f"admin account {username!r} ready" in done.stdout

    login = requests.post(
        f"{user_service.url}/api/v1/login",
        json={"username": username, "password": "boss-password-1"},
        timeout=10,
    )
    assert login.status_code == 200
    claims = jwt.decode(login.json()["accessToken"], options={"verify_signature": False})
    assert claims["role"] == "admin"


def test_ctrl_c_stops_events_tail_quietly(local_sqs, queue_pair):
    env = {
        **os.environ,
        **queue_pair.environment(local_sqs.endpoint),
        "ORDER_SERVICE_URL": closed_url(),
    }
    tail = subprocess.Popen(
        [sys.executable, "-m", "shopctl", "events", "tail"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert tail.stderr is not None
    assert "tailing" in tail.stderr.readline()
    time.sleep(1)  # inside a long poll now
    tail.send_signal(signal.SIGINT)
    _, stderr = tail.communicate(timeout=30)

    assert tail.returncode == 130
    assert "Traceback" not in stderr
