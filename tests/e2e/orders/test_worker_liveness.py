"""The relay's liveness probe, exactly as the Kubernetes manifest and compose run it, and the
metrics it serves."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests

from tests.support.processes import free_port

pytestmark = pytest.mark.e2e

PROBE = [sys.executable, "-m", "order_service.heartbeat"]


def probe(heartbeat_file: str) -> int:
    env = {**os.environ, "WORKER_HEARTBEAT_FILE": heartbeat_file}
    return subprocess.run(PROBE, env=env, capture_output=True, check=False).returncode


def test_a_relaying_worker_keeps_its_probe_passing(order_worker, order_service_env):
    heartbeat = order_service_env["WORKER_HEARTBEAT_FILE"]
    deadline = time.monotonic() + 10
    while not Path(heartbeat).exists() and time.monotonic() < deadline:
        time.sleep(0.2)
    assert probe(heartbeat) == 0


def test_a_stale_or_missing_heartbeat_fails_the_probe(tmp_path):
    assert probe(str(tmp_path / "never-written")) == 1
    stale = tmp_path / "stale"
    stale.touch()
    an_hour_ago = time.time() - 3600
    os.utime(stale, (an_hour_ago, an_hour_ago))
    assert probe(str(stale)) == 1


def test_a_worker_given_a_metrics_port_serves_its_metrics(order_stack, product_service):
    port = free_port()
    env = order_stack.environment(product_service.url, WORKER_METRICS_PORT=str(port))
    order_stack.worker(env, name="order_worker-metrics")
    deadline = time.monotonic() + 10
    while True:
        try:
            metrics = requests.get(f"http://127.0.0.1:{port}/metrics", timeout=5)
            break
        except requests.ConnectionError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)
    assert metrics.status_code == 200
    assert "shop_outbox_events_parked_total 0.0" in metrics.text
