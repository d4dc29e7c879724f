"""A real SQS endpoint on this machine: LocalStack in host mode, in its own virtual environment.

Its pins clash with the services' (see shared/LOCAL_SQS.md), so it never shares their venv.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import boto3

# Shared with shopctl, which ships in the images without devstack.
from shopctl.config import DEAD_LETTER_QUEUE_NAME as DEAD_LETTER_QUEUE_NAME
from shopctl.config import LOCAL_CREDENTIALS as LOCAL_CREDENTIALS
from shopctl.config import QUEUE_NAME as QUEUE_NAME

LOCALSTACK_REQUIREMENTS = [
    "localstack-core[runtime]==4.4.0",
    "cbor2==5.6.5",
    "pyopenssl==24.2.1",
    "cryptography==43.0.3",
    "service_identity<24.3",
]
# A message that fails this many receives is parked in the DLQ instead of looping forever.
MAX_RECEIVES_BEFORE_DLQ = 5


def ensure_localstack(venv: Path) -> Path:
    """Create LocalStack's venv on first use; returns its interpreter."""
    python = venv / "bin" / "python"
    marker = venv / ".shop-installed"
    if marker.exists() and marker.read_text() == "\n".join(LOCALSTACK_REQUIREMENTS):
        return python
    print(f"devstack: installing LocalStack into {venv} (first run only, ~1 minute)", flush=True)
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    subprocess.run(
        [
            str(python),
            "-m",
            "pip",
            "install",
            "-q",
            "--disable-pip-version-check",
            *LOCALSTACK_REQUIREMENTS,
        ],
        check=True,
    )
    marker.write_text("\n".join(LOCALSTACK_REQUIREMENTS))
    return python


def localstack_command(python: Path) -> list[str]:
    return [str(python), "-m", "localstack.runtime.main"]


def localstack_environment(host: str, port: int, data_dir: Path) -> dict[str, str]:
    data_dir.mkdir(parents=True, exist_ok=True)
    return {
        **os.environ,
        "SERVICES": "sqs",
        "GATEWAY_LISTEN": f"{host}:{port}",
        "LOCALSTACK_HOST": f"{host}:{port}",
        "FILESYSTEM_ROOT": str(data_dir),
        "SQS_ENDPOINT_STRATEGY": "path",
        "SKIP_SSL_CERT_DOWNLOAD": "1",
        "DISABLE_EVENTS": "1",
    }


def wait_until_ready(endpoint: str, timeout_s: float = 60.0) -> None:
    deadline = time.monotonic() + timeout_s
    last_error = "no answer"
    while time.monotonic() < deadline:
        try:
            health_url = f"{endpoint}/_localstack/health"  # our own http endpoint
            with urllib.request.urlopen(health_url, timeout=2) as answer:  # noqa: S310
                services = json.load(answer).get("services", {})
                if services.get("sqs") in {"available", "running"}:
                    return
                last_error = f"sqs is {services.get('sqs')!r}"
        except (urllib.error.URLError, OSError, ValueError) as exc:
            last_error = str(exc)
        time.sleep(0.25)
    raise TimeoutError(f"LocalStack at {endpoint} not ready after {timeout_s:.0f}s: {last_error}")


def local_sqs_client(endpoint: str) -> Any:
    """A client for the local endpoint, which takes any credentials but needs some."""
    return boto3.client(
        "sqs",
        endpoint_url=endpoint,
        region_name=LOCAL_CREDENTIALS["AWS_DEFAULT_REGION"],
        aws_access_key_id=LOCAL_CREDENTIALS["AWS_ACCESS_KEY_ID"],
        aws_secret_access_key=LOCAL_CREDENTIALS["AWS_SECRET_ACCESS_KEY"],
    )


def create_queues(endpoint: str) -> str:
    """Create `order-events` with its dead-letter queue; returns the main queue's URL."""
    sqs = local_sqs_client(endpoint)
    dlq_url = sqs.create_queue(QueueName=DEAD_LETTER_QUEUE_NAME)["QueueUrl"]
    dlq_arn = sqs.get_queue_attributes(QueueUrl=dlq_url, AttributeNames=["QueueArn"])["Attributes"][
        "QueueArn"
    ]
    redrive = {"deadLetterTargetArn": dlq_arn, "maxReceiveCount": str(MAX_RECEIVES_BEFORE_DLQ)}
    queue_url: str = sqs.create_queue(
        QueueName=QUEUE_NAME, Attributes={"RedrivePolicy": json.dumps(redrive)}
    )["QueueUrl"]
    return queue_url
