"""Every input is bounded before it is converted, parsed or decoded: the parsing layer alone,
on a bare Flask app (no database, no other service)."""

from __future__ import annotations

import io
import time
from collections.abc import Callable
from decimal import Decimal
from typing import Annotated, Any

import pytest
from flask import Blueprint, Flask, jsonify
from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError

from common.config import CommonSettings
from common.errors import BadRequest, Unprocessable
from common.inputs import (
    MAX_JSON_DEPTH,
    JsonInt,
    StorableText,
    json_body,
    nesting_depth,
    parse_json,
    query_params,
)
from common.metrics import REQUESTS
from common.money import parse_money
from common.pagination import MAX_CURSOR_CHARS, PageQuery, decode_cursor, encode_cursor
from common.web import create_base_app

PROBLEM = "application/problem+json"
QUICK_S = 0.5


class Quantity(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)

    quantity: Annotated[JsonInt, Field(ge=1, le=1000)]


def _quickly(call: Callable[..., Any], *args: Any) -> Any:
    started = time.perf_counter()
    try:
        return call(*args)
    finally:
        assert time.perf_counter() - started < QUICK_S


# --- nesting ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "depth"),
    [
        ("1", 0),
        ('{"a": [1, {"b": []}]}', 4),
        ('["[[[[", "{{{{", "\\"[[["]', 1),  # brackets in strings, an escaped quote
        ('["\\\\", ["x"]]', 2),  # an escaped backslash ends before the quote
        ('"unterminated [[[', 0),
        ('["a", "b\\', 1),  # a string cut off inside an escape
        ("[" * 100_000, 100_000),
    ],
)
def test_nesting_depth_counts_brackets_outside_strings(text, depth):
    assert nesting_depth(text) == depth


@pytest.mark.parametrize(
    "text",
    [
        "[" * 100_000 + "]" * 100_000,
        '{"a":' * 50_000 + "1" + "}" * 50_000,
        "[" * (MAX_JSON_DEPTH + 1) + "]" * (MAX_JSON_DEPTH + 1),
    ],
)
def test_deep_nesting_is_a_quick_400_not_a_recursion_error(text):
    with pytest.raises(BadRequest, match="nested more than"):
        _quickly(parse_json, text.encode())


def test_nesting_up_to_the_limit_parses():
    text = "[" * MAX_JSON_DEPTH + "]" * MAX_JSON_DEPTH
    assert parse_json(text.encode()) is not None


def test_quadratic_string_scans_are_impossible():
    # An unterminated string of escaped quotes: a regex retried from every quote would be
    # quadratic in the body size.
    _quickly(nesting_depth, '"' + '\\"' * 200_000 + "\\")


# --- numbers ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "number",
    [
        "1e600000",
        "1E+999999",
        "-1e999999",
        "1e-999999",
        "0e999999",
        "9" * 10_000,
        "-" + "9" * 10_000,
        "0." + "0" * 10_000 + "1",
        "1" * 41,
    ],
)
def test_numbers_out_of_range_are_a_quick_422_before_any_conversion(number):
    body = f'{{"quantity": {number}}}'.encode()
    with pytest.raises(Unprocessable) as refused:
        _quickly(parse_json, body)
    assert refused.value.detail == "A number in the body is out of range."


@pytest.mark.parametrize(
    ("number", "value"),
    [("7", 7), ("-7", -7), ("19.99", Decimal("19.99")), ("1e40", Decimal("1e40"))],
)
def test_numbers_in_range_parse_exactly(number, value):
    assert parse_json(f"[{number}]".encode()) == [value]


@pytest.mark.parametrize("constant", ["NaN", "Infinity", "-Infinity", "nan", "inf", "-inf"])
def test_non_finite_numbers_are_not_json(constant):
    with pytest.raises(BadRequest):
        parse_json(f'{{"quantity": {constant}}}'.encode())


@pytest.mark.parametrize("raw", [b'{"a": "\xff"}', b"\xfe\xff\x00{", b'{"a": "\xed\xa0\x80"}'])
def test_a_body_that_is_not_utf8_is_400(raw):
    with pytest.raises(BadRequest, match="UTF-8"):
        parse_json(raw)


def test_json_integers_convert_only_bounded_decimals():
    # A value that did not come through parse_json is bounded too: int(Decimal("1e300000"))
    # alone would take seconds.
    with pytest.raises(ValidationError):
        _quickly(Quantity.model_validate, {"quantity": Decimal("1e300000")})
    assert Quantity.model_validate({"quantity": Decimal("5E+0")}).quantity == 5


def test_money_text_is_bounded_before_decimal_reads_it():
    with pytest.raises(ValueError, match="at most 40 characters"):
        parse_money("1" * 41)


# --- text ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("text", ["a\x00b", "\x1b[31mred", "del\x7f", "c1\x85"])
def test_storable_text_refuses_control_characters(text):
    with pytest.raises(ValidationError, match="control characters"):
        TypeAdapter(StorableText).validate_python(text)


def test_storable_text_keeps_tabs_and_line_breaks():
    assert TypeAdapter(StorableText).validate_python("a\tb\r\nc") == "a\tb\r\nc"


# --- cursors ------------------------------------------------------------------------------------


def test_the_cursors_issued_fit_the_bound():
    assert len(encode_cursor("01a21113-12af-7a1d-9213-90b0e99e75cc")) <= MAX_CURSOR_CHARS


def test_a_long_cursor_is_refused_before_it_is_decoded():
    # Base64 of 3,000 brackets: decoded and parsed, it raised RecursionError (a 500).
    import base64

    cursor = base64.urlsafe_b64encode(b"[" * 3000).decode()
    with pytest.raises(Unprocessable, match="cursor"):
        decode_cursor(cursor)


# --- the request cycle ----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def app() -> Flask:
    routes = Blueprint("bounds_test", __name__)

    @routes.post("/quantity")
    def take_quantity():
        return jsonify(quantity=json_body(Quantity).quantity)

    @routes.post("/no-body")
    def ignore_body():
        return jsonify(ok=True)

    @routes.get("/page")
    def page():
        return jsonify(limit=query_params(PageQuery).limit)

    app = create_base_app(
        CommonSettings(max_body_bytes=1024), package="product_service", readiness_checks={}
    )
    app.register_blueprint(routes)
    return app


@pytest.mark.parametrize(
    ("path", "headers", "body", "status"),
    [
        ("/quantity", {"Content-Type": "application/json"}, b"[" * 2048, 413),
        ("/quantity", {"Content-Type": "text/plain"}, b'{"quantity": 1}', 415),
        ("/no-body", {"Content-Type": "application/json"}, b'{"quantity": 1}', 200),
    ],
)
def test_a_body_left_unread_closes_the_connection(app, path, headers, body, status):
    response = app.test_client().post(path, data=body, headers=headers)
    assert response.status_code == status
    assert response.headers.get("Connection") == "close"


@pytest.mark.parametrize(("size", "status"), [(2048, 413), (1024, 400), (10, 400)])
def test_a_chunked_body_over_the_limit_is_413_not_cut_short(app, size, status):
    # Werkzeug stops reading a body of no declared length at the limit: without a check, the
    # first 1024 bytes were parsed as if they were the whole body.
    response = app.test_client().post(
        "/quantity",
        input_stream=io.BytesIO(b"[" * size),
        headers={"Content-Type": "application/json", "Transfer-Encoding": "chunked"},
        environ_overrides={"wsgi.input_terminated": True},
    )
    assert response.status_code == status
    assert (response.headers.get("Connection") == "close") == (status == 413)


@pytest.mark.parametrize(("body", "status"), [(b'{"quantity": 2}', 200), (b"[", 400)])
def test_a_body_that_was_read_keeps_the_connection(app, body, status):
    response = app.test_client().post(
        "/quantity", data=body, headers={"Content-Type": "application/json"}
    )
    assert response.status_code == status
    assert "Connection" not in response.headers


def test_an_unknown_field_is_a_422_naming_it(app):
    response = app.test_client().post("/quantity", json={"quantity": 1, "quantityy": 2})
    assert response.status_code == 422
    assert response.mimetype == PROBLEM
    assert [e["field"] for e in response.get_json()["errors"]] == ["quantityy"]


@pytest.mark.parametrize("query", ["limit=%FF", "limit=5&cursor=%C0%AF", "x=%ED%A0%80"])
def test_a_query_string_that_is_not_utf8_is_400(app, query):
    response = app.test_client().get(f"/page?{query}")
    assert response.status_code == 400
    assert response.mimetype == PROBLEM


@pytest.mark.parametrize("limit", ["9" * 5000, "1e999999", "NaN", "Infinity", "-Infinity", "%00"])
def test_hostile_query_numbers_are_a_quick_422(app, limit):
    response = _quickly(app.test_client().get, f"/page?limit={limit}")
    assert response.status_code == 422
    assert response.mimetype == PROBLEM


# --- metrics ------------------------------------------------------------------------------------


def _labels(name: str) -> set[str]:
    return {
        sample.labels[name]
        for metric in REQUESTS.collect()
        for sample in metric.samples
        if sample.labels.get("service") == "shop"
    }


def test_metrics_labels_hold_no_client_chosen_value(app):
    client = app.test_client()
    for invented in ("BREW", "X-INVENTED-1", "PROPFIND"):
        client.open("/quantity", method=invented)
    client.get("/no/such/path/" + "x" * 50)
    assert not {"BREW", "X-INVENTED-1", "PROPFIND"} & _labels("method")
    assert "other" in _labels("method")
    assert not any("no/such" in route for route in _labels("route"))


# --- unknown fields -----------------------------------------------------------------------------

SERVICES = ("user_service", "product_service", "order_service")


def _route_modules() -> list[Any]:
    """Each service's `api` module and any `<concern>_api` beside it (the address book's)."""
    import importlib
    import pkgutil

    return [
        importlib.import_module(f"{service}.{info.name}")
        for service in SERVICES
        for info in pkgutil.iter_modules([service])
        if info.name == "api" or info.name.endswith("_api")
    ]


def _request_models() -> list[type[BaseModel]]:
    models = []
    for module in _route_modules():
        models += [
            value
            for value in vars(module).values()
            if isinstance(value, type)
            and issubclass(value, BaseModel)
            and value.__module__ == module.__name__
        ]
    return models


def test_every_request_model_refuses_fields_it_does_not_define():
    models = _request_models()
    assert len(models) >= 10  # every service's models were found
    assert [m.__name__ for m in models if m.model_config.get("extra") != "forbid"] == []


def _object_schemas(schema: Any, spec: dict[str, Any], seen: frozenset[str] = frozenset()) -> Any:
    """Every object schema a request body can hold, refs resolved."""
    if not isinstance(schema, dict):
        return
    ref = schema.get("$ref")
    if ref is not None:
        if ref not in seen:
            target = spec
            for part in ref.removeprefix("#/").split("/"):
                target = target[part]
            yield from _object_schemas(target, spec, seen | {ref})
        return
    if schema.get("type") == "object" or "properties" in schema:
        yield schema
    for key in ("allOf", "oneOf", "anyOf"):
        for part in schema.get(key, []):
            yield from _object_schemas(part, spec, seen)
    for part in schema.get("properties", {}).values():
        yield from _object_schemas(part, spec, seen)
    yield from _object_schemas(schema.get("items"), spec, seen)


@pytest.mark.parametrize("service", SERVICES)
def test_every_request_body_schema_says_unknown_fields_are_refused(service):
    from pathlib import Path

    import yaml

    spec = yaml.safe_load(Path(f"{service}/openapi.yaml").read_text())
    open_objects = [
        f"{method.upper()} {path}: {sorted(schema.get('properties', {}))}"
        for path, operations in spec["paths"].items()
        for method, operation in operations.items()
        if isinstance(operation, dict) and "requestBody" in operation
        for media in operation["requestBody"]["content"].values()
        for schema in _object_schemas(media["schema"], spec)
        if schema.get("additionalProperties") is not False
    ]
    assert open_objects == []


def test_the_stored_text_rule_is_the_one_the_spec_states():
    from pathlib import Path

    import yaml

    from common.inputs import STORABLE_TEXT_PATTERN

    schemas = yaml.safe_load(Path("product_service/openapi.yaml").read_text())["components"][
        "schemas"
    ]
    assert schemas["StorableText"]["pattern"] == STORABLE_TEXT_PATTERN
