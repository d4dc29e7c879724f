"""shopctl's output for people: redaction, requests and answers, events, the outbox."""

from __future__ import annotations

from pathlib import Path

from shopctl.config import admin_credentials, read_env_file
from shopctl.formatting import (
    format_event,
    format_outbox_status,
    format_request,
    format_response,
    pretty_json,
    redact,
    short_id,
)

ORDER = "01a21b29-360b-78ef-9cab-c4715774f0e2"
PRODUCT = "01a21b28-8fdc-7cf0-9855-fb16760224ba"


def test_passwords_are_hidden_and_tokens_shortened_at_any_depth():
    token = "eyJhbGciOiJSUzI1NiJ9." + "x" * 200
    shown = redact({"password": "hunter2hunter2", "nested": [{"accessToken": token}]})
    assert shown["password"] == "********"
    assert shown["nested"][0]["accessToken"].startswith("eyJhbGciOiJSUzI1")
    assert "221 chars" in shown["nested"][0]["accessToken"]


def test_a_request_shows_method_url_interesting_headers_and_the_body():
    text = format_request(
        "POST",
        "http://127.0.0.1:8080/api/v1/orders",
        body={"items": [{"productId": PRODUCT, "quantity": 2}]},
        headers={"Idempotency-Key": "k-1", "Authorization": "Bearer secret", "Accept": "x"},
    )
    lines = text.splitlines()
    assert lines[0] == "→ POST http://127.0.0.1:8080/api/v1/orders"
    assert "  Idempotency-Key: k-1" in lines
    assert "  Authorization: Bearer …" in lines
    assert "secret" not in text
    assert "Accept" not in text
    assert '"quantity": 2' in text


def test_an_answer_shows_status_phrase_location_and_pretty_body():
    text = format_response(
        201,
        {"Location": f"/api/v1/orders/{ORDER}", "Content-Type": "application/json"},
        {"id": ORDER, "status": "PENDING"},
    )
    lines = text.splitlines()
    assert lines[0] == "← 201 Created"
    assert lines[1] == f"  Location: /api/v1/orders/{ORDER}"
    assert "Content-Type" not in text
    assert '    "status": "PENDING"' in lines


def test_an_answer_without_body_or_with_an_unknown_status_is_still_one_clear_line():
    assert format_response(204, {}, None) == "← 204 No Content"
    assert format_response(599, {}, "") == "← 599 "


def test_an_event_is_one_line_with_type_order_status_total_and_items():
    body = {
        "eventId": "01a21b29-361f-75a7-bee7-c46eadf3c56f",
        "eventType": "order_created",
        "occurredAt": "2026-11-27T04:00:15.371734Z",
        "orderId": ORDER,
        "userId": "01a21b28-9b3e-7de2-9678-c4c6e0cdcb84",
        "status": "PENDING",
        "totalAmount": "77.66",
        "items": [{"productId": PRODUCT, "quantity": 2, "price": "32.09"}],
    }
    line = format_event(body, {"eventType": "order_created", "requestId": "req-7"})
    assert "\n" not in line
    assert line.startswith("04:00:15.371  order_created ")
    for part in ("order …c4715774f0e2", "PENDING", "total 77.66", "2 x …fb16760224ba", "req-7"):
        assert part in line


def test_an_event_that_is_not_ours_still_prints():
    line = format_event({}, {"eventType": "mystery"})
    assert "mystery" in line
    assert "order ?" in line


def test_short_ids_keep_the_distinct_tail():
    assert short_id(ORDER) == "…c4715774f0e2"
    assert short_id("abc") == "abc"
    assert short_id(None) == "?"


def test_outbox_status_lines():
    report = {
        "pending": 3,
        "oldestPendingAt": "2026-11-27T04:00:00",
        "lastSentAt": None,
        "parked": 1,
        "parkedEvents": [
            {
                "eventId": "0190a1b2-0000-7000-8000-000000000001",
                "eventType": "order_created",
                "orderId": "0190a1b2-0000-7000-8000-0000000000aa",
                "attempts": 10,
                "parkedAt": "2026-11-27T04:01:00Z",
            }
        ],
    }
    assert format_outbox_status(report).splitlines() == [
        "pending        3",
        "oldest pending 2026-11-27T04:00:00",
        "last sent      -",
        "parked         1",
        "  parked 2026-11-27T04:01:00Z  order_created  order …0000000000aa  "
        "event 0190a1b2-0000-7000-8000-000000000001  after 10 refusals",
    ]


def test_admin_credentials_come_from_the_environment_first(monkeypatch, tmp_path: Path):
    saved = tmp_path / "credentials.env"
    saved.write_text("ADMIN_USERNAME=admin\nADMIN_PASSWORD=from-file\n# note\n")
    monkeypatch.delenv("ADMIN_USERNAME", raising=False)
    monkeypatch.delenv("ADMIN_PASSWORD", raising=False)
    compose = tmp_path / ".env"
    compose.write_text("ADMIN_USERNAME=admin\nADMIN_PASSWORD=from-compose\n")
    assert admin_credentials((saved, compose)) == ("admin", "from-file")
    assert admin_credentials((tmp_path / "missing.env", compose)) == ("admin", "from-compose")
    monkeypatch.setenv("ADMIN_USERNAME", "root")
    monkeypatch.setenv("ADMIN_PASSWORD", "from-env")
    assert admin_credentials((saved, compose)) == ("root", "from-env")


def test_no_admin_credentials_anywhere_is_none(monkeypatch, tmp_path: Path):
    monkeypatch.delenv("ADMIN_USERNAME", raising=False)
    monkeypatch.delenv("ADMIN_PASSWORD", raising=False)
    assert admin_credentials((tmp_path / "missing.env",)) is None
    assert read_env_file(tmp_path / "missing.env") == {}


def test_short_flat_objects_inside_a_body_stay_on_one_line():
    order = {
        "id": ORDER,
        "items": [{"productId": PRODUCT, "quantity": 2, "price": "32.09"}],
        "empty": [],
    }
    assert pretty_json(order, indent="").splitlines() == [
        "{",
        f'  "id": "{ORDER}",',
        '  "items": [',
        f'    {{"productId": "{PRODUCT}", "quantity": 2, "price": "32.09"}}',
        "  ],",
        '  "empty": []',
        "}",
    ]
