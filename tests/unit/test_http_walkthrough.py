"""docs/shop.http stays true to the specs: every request is an operation its service declares."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import yaml

WALKTHROUGH = Path("docs/shop.http")
SERVICES = {"users": "user_service", "products": "product_service", "orders": "order_service"}
REQUEST_LINE = re.compile(r"^(GET|POST|PUT|PATCH|DELETE) \{\{(\w+)\}\}(\S+)$")
VARIABLE = re.compile(r"\{\{([^}]+)\}\}")


def _blocks() -> list[list[str]]:
    return [block.strip().splitlines() for block in WALKTHROUGH.read_text().split("###")[1:]]


def _operations(service: str) -> list[tuple[str, re.Pattern[str]]]:
    spec = yaml.safe_load(Path(service, "openapi.yaml").read_text())
    return [
        (method.upper(), re.compile("^" + re.sub(r"\{[^}]+\}", "[^/]+", path) + "$"))
        for path, item in spec["paths"].items()
        for method in item
    ]


def test_every_request_is_an_operation_of_its_service():
    requests_seen = 0
    for block in _blocks():
        lines = [line for line in block[1:] if not line.startswith("#")]
        match = REQUEST_LINE.match(lines[0])
        assert match, f"not a request line: {lines[0]!r}"
        method, service, target = match.groups()
        path = VARIABLE.sub("x", target.split("?")[0])
        assert any(
            method == op_method and pattern.match(path)
            for op_method, pattern in _operations(SERVICES[service])
        ), f"{method} {target} is not in {SERVICES[service]}/openapi.yaml"
        requests_seen += 1
    assert requests_seen >= 15


def test_bodies_are_json_and_answers_are_named_before_they_are_used():
    named: set[str] = set()
    file_variables = set(re.findall(r"^@(\w+) =", WALKTHROUGH.read_text(), re.M))
    for block in _blocks():
        text = "\n".join(block)
        for reference in VARIABLE.findall(text):
            name = reference.split(".")[0]
            assert name in named | file_variables, f"{reference} used before it is defined"
        if "" in block:
            body = "\n".join(block[block.index("") + 1 :])
            json.loads(VARIABLE.sub("x", body))
        named.update(re.findall(r"^# @name (\w+)$", text, re.M))


@pytest.mark.parametrize(
    "step", ["/api/v1/users", "/api/v1/login", "/search", "Idempotency-Key", "/pay", "/cancel"]
)
def test_the_walkthrough_covers_the_flow(step):
    assert step in WALKTHROUGH.read_text()
