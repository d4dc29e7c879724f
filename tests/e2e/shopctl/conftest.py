from __future__ import annotations

import os
import subprocess
import sys
import uuid
from dataclasses import dataclass

import pytest

from tests.support.processes import free_port


def closed_url() -> str:
    """A loopback URL nothing listens on (never one of `make run`'s fixed ports)."""
    return f"http://127.0.0.1:{free_port()}"


def shopctl(
    *args: str, env: dict[str, str], timeout_s: float = 120
) -> subprocess.CompletedProcess[str]:
    """`python -m shopctl ...` as a real process. Every endpoint is given explicitly, so a test
    never reaches a system someone runs on this machine's default ports."""
    isolated = {
        "USER_SERVICE_URL": closed_url(),
        "PRODUCT_SERVICE_URL": closed_url(),
        "ORDER_SERVICE_URL": closed_url(),
        "SQS_ENDPOINT_URL": closed_url(),
        "ORDER_DATABASE_URL": "sqlite:////nonexistent/order_service.db",
    }
    return subprocess.run(
        [sys.executable, "-m", "shopctl", *args],
        env={**os.environ, "NO_COLOR": "1", **isolated, **env},
        capture_output=True,
        text=True,
        timeout=timeout_s,
    )


@dataclass
class QueuePair:
    """A private `<name>` + `<name>-dlq` on the shared LocalStack, so tests never share a queue."""

    name: str
    url: str
    dlq_url: str
    client: object

    def environment(self, endpoint: str) -> dict[str, str]:
        return {"SQS_ENDPOINT_URL": endpoint, "ORDER_EVENTS_QUEUE": self.name}


@pytest.fixture
def queue_pair(local_sqs):
    client = local_sqs.client()
    name = f"shopctl-{uuid.uuid4().hex[:10]}"
    dlq_url = client.create_queue(QueueName=f"{name}-dlq")["QueueUrl"]
    url = client.create_queue(QueueName=name)["QueueUrl"]
    yield QueuePair(name, url, dlq_url, client)
    client.delete_queue(QueueUrl=url)
    client.delete_queue(QueueUrl=dlq_url)
