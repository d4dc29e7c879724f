"""The user service as it runs in production: gunicorn workers, the CLI, JSON logs."""

from __future__ import annotations

import json

import requests

from tests.e2e.conftest import ADMIN


def test_prestart_ensured_the_configured_admin(user_service):
    response = requests.post(
        f"{user_service.url}/api/v1/login",
        json={"username": ADMIN[0], "password": ADMIN[1]},
        timeout=5,
    )
    assert response.status_code == 200


def test_every_log_line_of_a_request_carries_its_request_id(user_service):
    request_id = "e2e-trace-42"
    requests.post(
        f"{user_service.url}/api/v1/login",
        json={"username": "nobody-here", "password": "whatever1"},
        headers={"X-Request-ID": request_id},
        timeout=5,
    )
    lines = [
        json.loads(line) for line in user_service.log_text().splitlines() if request_id in line
    ]
    assert lines, "the request left no log line"
    assert all(line["request_id"] == request_id for line in lines)
    assert any(line.get("event") == "request" and line.get("status") == 401 for line in lines)


def test_metrics_are_aggregated_across_workers(user_service):
    for _ in range(10):
        requests.get(f"{user_service.url}/health", timeout=5)
    text = requests.get(f"{user_service.url}/metrics", timeout=5).text
    series = 'http_requests_total{method="GET",route="/health",service="user_service",status="200"}'
    line = next(row for row in text.splitlines() if row.startswith(series))
    assert float(line.rsplit(" ", 1)[1]) >= 10
