"""`make run`'s combined log: readable lines on a terminal, JSON lines elsewhere; the banner."""

from __future__ import annotations

import io
import json
import sys

from devstack import logview
from devstack.stack import SERVICES, Supervisor, banner

ACCESS = json.dumps(
    {
        "method": "GET",
        "path": "/health",
        "status": 200,
        "request_id": "r-1",
        "event": "request",
        "level": "info",
        "logger": "shop.access",
        "timestamp": "2026-11-27T04:00:01.123456Z",
        "service": "user_service",
    }
)


def test_a_json_record_reads_as_one_line_on_a_terminal():
    line = logview.for_terminal("user_service", ACCESS + "\n")
    assert line == (
        "user_service   | 04:00:01.123 info    request "
        "method=GET path=/health status=200 request_id=r-1"
    )


def test_colour_marks_the_prefix_and_warnings_only_when_asked():
    warning = json.dumps({"event": "not_ready", "level": "warning", "error": "db down"})
    coloured = logview.for_terminal("order_worker", warning, "\033[36m")
    assert coloured.startswith("\033[36morder_worker   |\033[0m ")
    assert "\033[33mwarning" in coloured
    assert 'error="db down"' in coloured
    assert "\033[" not in logview.for_terminal("order_worker", warning)


def test_plain_text_keeps_its_words_behind_the_prefix():
    assert logview.for_terminal("sqs", "Ready.\n") == "sqs            | Ready."


def test_off_a_terminal_every_line_is_json_naming_its_process():
    record = json.loads(logview.as_json("user_service", ACCESS + "\n"))
    assert record["process"] == "user_service"
    assert record["status"] == 200
    assert json.loads(logview.as_json("sqs", "Ready.\n")) == {"process": "sqs", "message": "Ready."}


def test_the_banner_names_urls_docs_sqs_credentials_and_the_next_command():
    env = {
        "SQS_ENDPOINT_URL": "http://127.0.0.1:4566",
        "ADMIN_USERNAME": "admin",
        "ADMIN_PASSWORD": "s3cret",
    }
    text = banner(SERVICES, env)
    for spec in SERVICES:
        assert f"{spec.url}/docs" in text
    assert "http://127.0.0.1:4566" in text
    assert "admin / s3cret" in text
    assert "make demo" in text


def test_the_banner_in_a_log_file_is_json_lines():
    log = io.StringIO()
    Supervisor(output=log).announce("\nShop is running:\n  next  make demo\n")
    lines = [json.loads(line) for line in log.getvalue().splitlines()]
    assert lines == [
        {"process": "devstack", "message": "Shop is running:"},
        {"process": "devstack", "message": "next  make demo"},
    ]


def test_with_a_log_dir_each_process_writes_its_own_file_and_nothing_is_relayed(tmp_path):
    log = io.StringIO()
    supervisor = Supervisor(output=log, log_dir=tmp_path)
    supervisor.start("echoer", [sys.executable, "-c", "print('hello'); print('again')"], {})
    assert supervisor.processes["echoer"].wait(timeout=10) == 0
    assert (tmp_path / "echoer.log").read_text() == "hello\nagain\n"
    assert log.getvalue() == ""
