"""Every operation of every service is in docs/shop.http and the Postman collection, and the
collection stays an importable Postman v2.1 collection whose requests can run in order.

An operation added to an openapi.yaml without a request in both documents fails here.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from functools import cache
from pathlib import Path
from typing import Any

import jsonschema_rs
import pytest
import yaml

WALKTHROUGH = Path("docs/shop.http")
COLLECTION = Path("docs/shop.postman_collection.json")
SERVICES = {"users": "user_service", "products": "product_service", "orders": "order_service"}
POSTMAN_BASES = {"usersUrl": "users", "productsUrl": "products", "ordersUrl": "orders"}
HTTP_METHODS = {"get", "post", "put", "patch", "delete"}
HTTP_REQUEST_LINE = re.compile(r"^(GET|POST|PUT|PATCH|DELETE) \{\{(\w+)\}\}(\S+)$", re.M)
VARIABLE = re.compile(r"\{\{([^}]+)\}\}")
SCRIPT_SETS = re.compile(r"pm\.collectionVariables\.set\('(\w+)'")
SCHEMA_V2_1 = "https://schema.getpostman.com/json/collection/v2.1.0/collection.json"

Operation = tuple[str, str, str]  # service, method, path template

# The rules of the v2.1 format this collection relies on (Postman's own schema is not fetched:
# the tests run offline). Unknown keys are refused so a typo cannot hide a field Postman ignores.
_TEXT = {"type": "string", "minLength": 1}
_KEY_VALUES = {
    "type": "array",
    "items": {
        "type": "object",
        "required": ["key", "value"],
        "properties": {"key": _TEXT, "value": {"type": "string"}},
    },
}
_EVENTS = {
    "type": "array",
    "items": {
        "type": "object",
        "additionalProperties": False,
        "required": ["listen", "script"],
        "properties": {
            "listen": {"enum": ["test", "prerequest"]},
            "script": {
                "type": "object",
                "additionalProperties": False,
                "required": ["type", "exec"],
                "properties": {
                    "type": {"const": "text/javascript"},
                    "exec": {"type": "array", "items": {"type": "string"}},
                },
            },
        },
    },
}
POSTMAN_V2_1_RULES: dict[str, Any] = {
    "type": "object",
    "additionalProperties": False,
    "required": ["info", "item"],
    "properties": {
        "info": {
            "type": "object",
            "required": ["name", "schema"],
            "properties": {"name": _TEXT, "schema": {"const": SCHEMA_V2_1}},
        },
        "item": {"type": "array", "minItems": 1, "items": {"$ref": "#/$defs/entry"}},
        "variable": _KEY_VALUES,
        "event": _EVENTS,
    },
    "$defs": {
        "entry": {"oneOf": [{"$ref": "#/$defs/folder"}, {"$ref": "#/$defs/request_item"}]},
        "folder": {
            "type": "object",
            "additionalProperties": False,
            "required": ["name", "item"],
            "properties": {
                "name": _TEXT,
                "description": {"type": "string"},
                "item": {"type": "array", "minItems": 1, "items": {"$ref": "#/$defs/entry"}},
                "event": _EVENTS,
            },
        },
        "request_item": {
            "type": "object",
            "additionalProperties": False,
            "required": ["name", "request"],
            "properties": {
                "name": _TEXT,
                "event": _EVENTS,
                "request": {
                    "type": "object",
                    "additionalProperties": False,
                    "required": ["method", "url"],
                    "properties": {
                        "method": {"enum": ["GET", "POST", "PUT", "PATCH", "DELETE"]},
                        "header": _KEY_VALUES,
                        "description": {"type": "string"},
                        "url": {
                            "type": "object",
                            "additionalProperties": False,
                            "required": ["raw", "host", "path"],
                            "properties": {
                                "raw": _TEXT,
                                "host": {"type": "array", "items": _TEXT},
                                "path": {"type": "array", "items": _TEXT},
                                "query": _KEY_VALUES,
                            },
                        },
                        "body": {
                            "type": "object",
                            "required": ["mode", "raw"],
                            "properties": {"mode": {"const": "raw"}, "raw": _TEXT},
                        },
                    },
                },
            },
        },
    },
}


@cache
def declared_operations() -> frozenset[Operation]:
    operations: set[Operation] = set()
    for service, directory in SERVICES.items():
        spec = yaml.safe_load(Path(directory, "openapi.yaml").read_text())
        for path, item in spec["paths"].items():
            operations.update(
                (service, method.upper(), path) for method in item if method in HTTP_METHODS
            )
    return frozenset(operations)


def operation_called(service: str, method: str, target: str) -> Operation | None:
    """The declared operation a request is a call of: `{{variables}}` fill `{parameters}`, and a
    literal segment beats a parameter (`/products/search` is a search, not a product id)."""
    segments = VARIABLE.sub("x", target.split("?")[0]).split("/")

    def fits(template: str) -> bool:
        parts = template.split("/")
        return len(parts) == len(segments) and all(
            part == segment or (part.startswith("{") and segment != "")
            for part, segment in zip(parts, segments, strict=True)
        )

    candidates = [
        operation
        for operation in declared_operations()
        if operation[:2] == (service, method) and fits(operation[2])
    ]
    return min(candidates, key=lambda operation: operation[2].count("{"), default=None)


def walkthrough_calls() -> list[tuple[str, str, str]]:
    return [
        (service, method, target)
        for method, service, target in HTTP_REQUEST_LINE.findall(WALKTHROUGH.read_text())
    ]


def collection() -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads(COLLECTION.read_text())
    return loaded


def postman_requests(entries: list[dict[str, Any]] | None = None) -> Iterator[dict[str, Any]]:
    """Every request item, depth first: the order the Collection Runner sends them in."""
    for entry in collection()["item"] if entries is None else entries:
        if "item" in entry:
            yield from postman_requests(entry["item"])
        else:
            yield entry


def postman_call(item: dict[str, Any]) -> tuple[str, str, str]:
    raw = item["request"]["url"]["raw"]
    base = re.match(r"^\{\{(\w+)\}\}", raw)
    assert base and base.group(1) in POSTMAN_BASES, f"{item['name']}: {raw} names no service"
    return POSTMAN_BASES[base.group(1)], item["request"]["method"], raw[base.end() :]


def scripts(item: dict[str, Any], listen: str) -> str:
    return "\n".join(
        line
        for event in item.get("event", [])
        if event["listen"] == listen
        for line in event["script"]["exec"]
    )


@pytest.mark.parametrize(
    ("document", "calls"),
    [
        pytest.param(WALKTHROUGH, walkthrough_calls, id="shop.http"),
        pytest.param(
            COLLECTION, lambda: map(postman_call, postman_requests()), id="postman_collection"
        ),
    ],
)
def test_every_declared_operation_is_documented(document, calls):
    documented = {operation_called(*call) for call in calls()}
    missing = sorted(declared_operations() - documented)
    assert not missing, f"{document} has no request for {missing}"


def test_every_postman_request_is_a_declared_operation():
    for item in postman_requests():
        service, method, target = postman_call(item)
        assert operation_called(service, method, target), (
            f"{item['name']}: {method} {target} is not in {SERVICES[service]}/openapi.yaml"
        )


def test_the_collection_is_postman_v2_1():
    jsonschema_rs.Draft202012Validator(POSTMAN_V2_1_RULES).validate(collection())


def test_each_url_says_the_same_in_its_parts_as_in_raw():
    # Postman sends the parts, while people read raw: they must not disagree.
    for item in postman_requests():
        url = item["request"]["url"]
        address, _, query = url["raw"].partition("?")
        assert address == "".join(url["host"]) + "/" + "/".join(url["path"]), item["name"]
        pairs = [pair.split("=", 1) for pair in query.split("&")] if query else []
        assert pairs == [[q["key"], q["value"]] for q in url.get("query", [])], item["name"]


def test_variables_are_set_before_use_and_bodies_are_json():
    variables = collection()["variable"]
    known = {variable["key"] for variable in variables if variable["value"]}
    declared = {variable["key"] for variable in variables}
    for item in postman_requests():
        known |= set(SCRIPT_SETS.findall(scripts(item, "prerequest")))
        request = item["request"]
        text = json.dumps(request)
        for name in VARIABLE.findall(text):
            assert name in known, f"{item['name']}: {{{{{name}}}}} is used before it is set"
        if "body" in request:
            json.loads(VARIABLE.sub("x", request["body"]["raw"]))
        set_here = set(SCRIPT_SETS.findall(scripts(item, "test")))
        assert set_here <= declared, f"{item['name']} sets undeclared {set_here - declared}"
        known |= set_here


@pytest.mark.parametrize(
    ("variable", "operation"),
    [
        ("customerToken", ("users", "POST", "/api/v1/login")),
        ("adminToken", ("users", "POST", "/api/v1/login")),
        ("userId", ("users", "POST", "/api/v1/users")),
        ("addressId", ("users", "POST", "/api/v1/users/{id}/addresses")),
        ("productId", ("products", "POST", "/api/v1/products")),
        ("orderId", ("orders", "POST", "/api/v1/orders")),
    ],
)
def test_answers_are_captured_into_variables(variable, operation):
    setters = [
        item
        for item in postman_requests()
        if variable in SCRIPT_SETS.findall(scripts(item, "test"))
    ]
    assert [operation_called(*postman_call(item)) for item in setters] == [operation]


def test_every_postman_request_tests_its_answer():
    for item in postman_requests():
        assert "pm.test(" in scripts(item, "test"), f"{item['name']} checks nothing"
