"""A real SQS endpoint for tests: LocalStack in host mode on a free port, in its own venv.

The venv lives under the repository's git-ignored `var/` so it is built once per clone and
shared by every test run (and by `make run`); each run gets its own port and data directory.
"""

from __future__ import annotations

import sys
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from devstack import sqs
from tests.support.processes import RunningProcess, free_port, start_process

REPOSITORY = Path(__file__).resolve().parents[2]
LOCALSTACK_VENV = REPOSITORY / "var" / "localstack-venv"


@dataclass
class LocalSqs:
    """A running LocalStack with `order-events` and its dead-letter queue created."""

    endpoint: str
    queue_url: str
    process: RunningProcess
    data_dir: Path

    def client(self) -> Any:
        return sqs.local_sqs_client(self.endpoint)

    def environment(self) -> dict[str, str]:
        """What a service or relay needs to talk to this endpoint."""
        return {"SQS_ENDPOINT_URL": self.endpoint, **sqs.LOCAL_CREDENTIALS}

    def private_queue(self, label: str) -> tuple[str, str]:
        """A queue of the caller's own, (name, url): tests sharing this endpoint (the e2e
        relay publishes to `order-events`) never consume each other's messages."""
        name = f"{label}-{uuid.uuid4().hex[:12]}"
        return name, self.client().create_queue(QueueName=name)["QueueUrl"]

    def stop(self) -> None:
        self.process.stop()

    def start(self) -> None:
        """(Re)start on the same port, e.g. after a test stopped it to simulate an outage.

        LocalStack keeps no state between starts here, so the queues are created again.
        """
        host, port = self.endpoint.removeprefix("http://").split(":")
        self.process = _spawn(host, int(port), self.data_dir, self.process.log_path.parent)
        self.queue_url = sqs.create_queues(self.endpoint)


def _spawn(host: str, port: int, data_dir: Path, log_dir: Path) -> RunningProcess:
    python = sqs.ensure_localstack(LOCALSTACK_VENV)
    running = start_process(
        f"localstack-{port}",
        sqs.localstack_command(python),
        sqs.localstack_environment(host, port, data_dir),
        log_dir,
    )
    endpoint = f"http://{host}:{port}"
    try:
        sqs.wait_until_ready(endpoint, timeout_s=120)
    except TimeoutError:
        running.stop()
        sys.stderr.write(running.log_text()[-3000:])
        raise
    running.url = endpoint
    return running


def start_local_sqs(work_dir: Path) -> Iterator[LocalSqs]:
    """Generator for a session fixture: yields a ready endpoint, stops it afterwards."""
    host, port = "127.0.0.1", free_port()
    data_dir = work_dir / "localstack-data"
    running = _spawn(host, port, data_dir, work_dir)
    endpoint = f"http://{host}:{port}"
    local = LocalSqs(endpoint, sqs.create_queues(endpoint), running, data_dir)
    try:
        yield local
    finally:
        local.stop()
