"""The LocalStack "ready" hook that compose and the local overlay mount, run for real.

The hook calls `awslocal` (the AWS CLI bound to LocalStack, inside LocalStack's image). Here a
small stand-in with the same arguments forwards to this run's LocalStack with boto3, and puts
a prefix on every queue name so the session's own `order-events` is left alone.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import uuid

import pytest

from tests.support.dockerfiles import REPOSITORY

pytestmark = pytest.mark.deploy

AWSLOCAL = """\
import json, os, sys
import boto3

args = sys.argv[1:]
assert args[0] == "sqs", args
operation, options = args[1], dict(zip(args[2::2], args[3::2]))
client = boto3.client("sqs", endpoint_url=os.environ["SQS_ENDPOINT_URL"])
prefix = os.environ["QUEUE_PREFIX"]
if operation == "create-queue":
    extra = {"Attributes": json.loads(options["--attributes"])} if "--attributes" in options else {}
    answer = client.create_queue(QueueName=prefix + options["--queue-name"], **extra)
elif operation == "get-queue-url":
    answer = client.get_queue_url(QueueName=prefix + options["--queue-name"])
elif operation == "get-queue-attributes":
    answer = client.get_queue_attributes(
        QueueUrl=options["--queue-url"], AttributeNames=options["--attribute-names"].split()
    )
else:
    sys.exit(f"awslocal stand-in: no {operation}")
for key in options.get("--query", "").split(".") if "--query" in options else []:
    answer = answer[key]
print(answer if options.get("--output") == "text" else json.dumps(answer, default=str))
"""


@pytest.mark.timeout(180)
def test_create_queues_hook_makes_order_events_with_its_dead_letter_queue(local_sqs, tmp_path):
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    stand_in = bin_dir / "awslocal"
    stand_in.write_text(f"#!{sys.executable}\n{AWSLOCAL}")
    stand_in.chmod(0o755)
    prefix = f"hook-{uuid.uuid4().hex[:8]}-"
    env = {
        **os.environ,
        **local_sqs.environment(),
        "PATH": f"{bin_dir}:{os.environ['PATH']}",
        "QUEUE_PREFIX": prefix,
    }
    hook = REPOSITORY / "deploy" / "localstack" / "create-queues.sh"
    done = subprocess.run(["sh", str(hook)], env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr

    sqs = local_sqs.client()
    queue = sqs.get_queue_url(QueueName=f"{prefix}order-events")["QueueUrl"]
    dlq = sqs.get_queue_url(QueueName=f"{prefix}order-events-dlq")["QueueUrl"]
    dlq_arn = sqs.get_queue_attributes(QueueUrl=dlq, AttributeNames=["QueueArn"])["Attributes"]
    policy = sqs.get_queue_attributes(QueueUrl=queue, AttributeNames=["RedrivePolicy"])
    redrive = json.loads(policy["Attributes"]["RedrivePolicy"])
    assert redrive["deadLetterTargetArn"] == dlq_arn["QueueArn"]
    assert int(redrive["maxReceiveCount"]) == 5

    # A message nobody deletes is received 5 times, then parked in the DLQ.
    sqs.send_message(QueueUrl=queue, MessageBody='{"eventId": "poison"}')
    receives = 0
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        got = sqs.receive_message(QueueUrl=queue, VisibilityTimeout=0, WaitTimeSeconds=0)
        receives += len(got.get("Messages", []))
        parked = sqs.receive_message(QueueUrl=dlq, WaitTimeSeconds=0).get("Messages", [])
        if parked:
            assert parked[0]["Body"] == '{"eventId": "poison"}'
            break
        time.sleep(0.05)
    else:
        pytest.fail(f"not in the DLQ after {receives} receives")
    assert receives == 5
