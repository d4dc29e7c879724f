"""Hostile input to every operation of every service, as real processes: each answer is a 4xx
problem+json within a second, and the service answers /health at once afterwards.

The operations are read from each service's openapi.yaml, so a new operation is covered without
touching this file. Requests carry an admin token, so the body is parsed rather than hidden
behind a 401, and reach real resources where the path names one (the admin's own user, a real
product); a body-less operation is sent a valid request only where the spec allows a hostile
value (a caller-chosen reservation id such as "NaN", released: nothing was held under it).
"""

from __future__ import annotations

import base64
import contextlib
import json
import re
import socket
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote, unquote_to_bytes

import jsonschema_rs
import pytest
import requests
import yaml

SERVICES = ("user_service", "product_service", "order_service")
HTTP_METHODS = ("get", "put", "post", "delete", "patch", "head", "options", "trace")
PROBLEM = "application/problem+json"
QUICK_S = 1.0
UNKNOWN_FIELD = "notAFieldOfThisOperation"
MAX_BODY_BYTES = 64 * 1024  # the services' default

# --- what the specs say -------------------------------------------------------------------------


def _resolve(node: Any, spec: dict[str, Any], seen: frozenset[str] = frozenset()) -> Any:
    """`node` with every $ref inlined (a recursive ref is left as an open schema)."""
    if isinstance(node, list):
        return [_resolve(item, spec, seen) for item in node]
    if not isinstance(node, dict):
        return node
    ref = node.get("$ref")
    if isinstance(ref, str):
        if ref in seen:
            return {}
        target: Any = spec
        for part in ref.removeprefix("#/").split("/"):
            target = target[part]
        return _resolve(target, spec, seen | {ref})
    return {key: _resolve(value, spec, seen) for key, value in node.items()}


@dataclass(frozen=True)
class Operation:
    service: str
    method: str
    path: str
    definition: dict[str, Any]

    def __str__(self) -> str:
        return f"{self.service} {self.method.upper()} {self.path}"

    def parameters(self, where: str) -> list[dict[str, Any]]:
        return [p for p in self.definition.get("parameters", []) if p["in"] == where]

    @property
    def body_schema(self) -> dict[str, Any] | None:
        content = self.definition.get("requestBody", {}).get("content", {})
        media = content.get("application/json")
        return None if media is None else media["schema"]

    @property
    def needs_token(self) -> bool:
        return bool(self.definition.get("security"))


def _operations() -> list[Operation]:
    found = []
    for service in SERVICES:
        spec = yaml.safe_load(Path(f"{service}/openapi.yaml").read_text())
        for path, item in spec["paths"].items():
            shared = item.get("parameters", [])
            for method in HTTP_METHODS:
                if method in item:
                    definition = _resolve(item[method], spec)
                    definition["parameters"] = _resolve(shared, spec) + definition.get(
                        "parameters", []
                    )
                    found.append(Operation(service, method, path, definition))
    return found


OPERATIONS = _operations()
BODY_OPERATIONS = [op for op in OPERATIONS if op.body_schema is not None]
PATH_PARAMETER_OPERATIONS = [op for op in OPERATIONS if op.parameters("path")]
QUERY_OPERATIONS = [op for op in OPERATIONS if op.parameters("query")]
PATHS = sorted({(op.service, op.path) for op in OPERATIONS})


# --- hostile values -----------------------------------------------------------------------------

HUGE_NUMBERS = [
    "1e999999",
    "-1e999999",
    "1E+600000",
    "1e-999999",
    "-1.5e-999999",
    "9" * 10_000,
    "-" + "9" * 10_000,
    "0." + "0" * 10_000 + "1",
    "1" + "0" * 10_000 + ".5e10",
]
NOT_FINITE = ["NaN", "-NaN", "Infinity", "-Infinity", "+Infinity", "nan", "inf", "-inf", "INF"]
NOT_FINITE_TEXT = ['"NaN"', '"Infinity"', '"-Infinity"', '"1e999999"', '"' + "9" * 10_000 + '"']
# Raw JSON for a value inside an otherwise ordinary body.
VALUE_TOKENS: list[bytes] = [
    *(n.encode() for n in HUGE_NUMBERS),
    *(n.encode() for n in NOT_FINITE),
    *(t.encode() for t in NOT_FINITE_TEXT),
    b'"\\u0000"',
    b'"a\\u0000b"',
    b'"a\x00b"',  # a raw NUL: not JSON
    b'"\xff\xfe"',  # not UTF-8
    b'"\xed\xa0\x80"',  # an encoded surrogate: not UTF-8 either
    b'"\\ud800"',  # a lone surrogate
    b'"\\u001b[2J"',
    b'"' + b"x" * 60_000 + b'"',
    b"[" * 20_000 + b"]" * 20_000,
    b'{"a":' * 10_000 + b"1" + b"}" * 10_000,
]
# Whole bodies.
BODIES: list[bytes] = [
    b"[" * 100_000 + b"]" * 100_000,  # over MAX_BODY_BYTES as well
    b"[" * 30_000 + b"]" * 30_000,
    b'{"a":' * 12_000 + b"1" + b"}" * 12_000,
    b'{"a": "' + b"x" * (1 << 20) + b'"}',
    b"",
    b"null",
    b"[]",
    b'"x"',
    b"1e999999",
    b"9" * 10_000,
    b"NaN",
    b"\x00",
    b"{\x00}",
    b"\xff",
    b"\xef\xbb\xbf{}",  # a BOM
    "{}".encode("utf-16"),
    b"{" * 5 + b'"',  # cut off
]
WRONG_CONTENT_TYPES = [
    None,
    "text/plain",
    "application/x-www-form-urlencoded",
    "multipart/form-data; boundary=x",
    "application/xml",
    "application/jsonx",
    "text/json",
]
UNKNOWN_METHODS = ["BREW", "PROPFIND", "X-INVENTED", "TRACE", "SEARCH"]
# Path segments and query values, percent-encoded as sent.
HOSTILE_SEGMENTS = [
    "1e999999",
    "9" * 3000,
    "NaN",
    "-Infinity",
    "%00",
    "a%00b",
    "%FF%FE",
    "%ED%A0%80",
    "..%2F..%2Fetc",
    quote(base64.urlsafe_b64encode(b"[" * 3000).decode()),
]
HOSTILE_HEADER_VALUES = ["x" * 8000, "1e999999", "\x7f", "\xff\xfe", "NaN", "9" * 5000]


def _nested_token() -> str:
    """A bearer token whose header is JSON nested ~1,000 deep: PyJWT parses it unverified."""
    header = base64.urlsafe_b64encode(b'{"a":' * 1000 + b"1" + b"}" * 1000).decode()
    return f"{header.rstrip('=')}.e30.c2ln"


HOSTILE_TOKENS = [_nested_token(), "9" * 6000, "a.b.c", "e30.e30.", "\xff.\xfe."]


# --- the request under test ---------------------------------------------------------------------


@dataclass
class Stack:
    urls: dict[str, str]
    token: str
    path_values: dict[tuple[str, str], str]
    session: requests.Session

    def url(self, operation: Operation, segments: dict[str, str] | None = None) -> str:
        path = operation.path
        for parameter in operation.parameters("path"):
            name = parameter["name"]
            value = (segments or {}).get(name) or self.path_values.get(
                (operation.service, name), str(uuid.uuid4())
            )
            path = path.replace("{" + name + "}", value)
        return self.urls[operation.service] + path

    def fills_every_path_parameter(self, operation: Operation) -> bool:
        return all(
            (operation.service, p["name"]) in self.path_values for p in operation.parameters("path")
        )

    def send(
        self,
        method: str,
        url: str,
        *,
        body: bytes | None = None,
        content_type: str | None = "application/json",
        headers: dict[str, str] | None = None,
    ) -> tuple[requests.Response | None, float, str]:
        sent = {"Authorization": f"Bearer {self.token}", **(headers or {})}
        if content_type is not None:
            sent["Content-Type"] = content_type
        started = time.perf_counter()
        try:
            response = self.session.request(method, url, data=body, headers=sent, timeout=10)
        except requests.RequestException as exc:
            return None, time.perf_counter() - started, f"{type(exc).__name__}: {exc}"
        return response, time.perf_counter() - started, ""


@pytest.fixture(scope="module")
def stack(user_service, product_service, order_service, admin, new_product) -> Iterator[Stack]:
    with requests.Session() as session:
        yield Stack(
            urls={
                "user_service": user_service.url,
                "product_service": product_service.url,
                "order_service": order_service.url,
            },
            token=admin.token,
            # Real resources where a path names one, so a body reaches its parser.
            path_values={
                ("user_service", "id"): admin.id,
                ("product_service", "id"): new_product()["id"],
                ("product_service", "reservationId"): "hostile-inputs-reservation",
            },
            session=session,
        )


def _refusal_problem(
    response: requests.Response | None, elapsed: float, error: str, *, allow_ok: bool = False
) -> str | None:
    """What is wrong with the answer, if anything."""
    if response is None:
        return f"no answer ({error})"
    if elapsed > QUICK_S:
        return f"{response.status_code} after {elapsed:.2f}s"
    if allow_ok and response.status_code < 400:
        return None
    if not 400 <= response.status_code < 500:
        return f"status {response.status_code}: {response.text[:200]}"
    if response.request.method != "HEAD" and response.headers.get("Content-Type") != PROBLEM:
        return f"{response.status_code} as {response.headers.get('Content-Type')}"
    return None


def _assert_refused_quickly(failures: list[str], stack: Stack, operation: Operation) -> None:
    health = stack.urls[operation.service] + "/health"
    started = time.perf_counter()
    answer = requests.get(health, timeout=5)
    if answer.status_code != 200 or time.perf_counter() - started > QUICK_S:
        failures.append(f"/health afterwards: {answer.status_code}")
    assert failures == [], f"{operation}:\n" + "\n".join(failures[:30])


# --- bodies -------------------------------------------------------------------------------------

_HOLE = "\x01hostile\x01"


def _template(schema: dict[str, Any]) -> Any:
    """A body of the schema's shape with every field present and invalid (an empty string, -1),
    so that one hostile field never completes an otherwise valid request."""
    schema = _first_alternative(schema)
    kind = schema.get("type")
    kind = next((k for k in kind if k != "null"), None) if isinstance(kind, list) else kind
    if kind == "object" or "properties" in schema:
        return {name: _template(sub) for name, sub in schema.get("properties", {}).items()}
    if kind == "array":
        return [_template(schema.get("items", {}))]
    if kind in ("integer", "number"):
        return -1
    return ""


def _holes(value: Any, schema: dict[str, Any]) -> Iterator[tuple[Any, dict[str, Any]]]:
    """The template once per field, with that field replaced by the hole, and the field's
    schema."""
    schema = _first_alternative(schema)
    if isinstance(value, dict):
        for key in value:
            for filled, field in _holes(value[key], schema.get("properties", {}).get(key, {})):
                yield {**value, key: filled}, field
    elif isinstance(value, list):
        for filled, field in _holes(value[0], schema.get("items", {})):
            yield [filled], field
    else:
        yield _HOLE, schema


def _first_alternative(schema: dict[str, Any]) -> dict[str, Any]:
    for key in ("oneOf", "anyOf", "allOf"):
        if key in schema:
            return _first_alternative(schema[key][0])
    return schema


def _valid_for(field: dict[str, Any], token: bytes) -> bool:
    """A token that is a fine value of its field (the text "NaN" is a valid reservation id,
    though not a valid price) is no hostile input there."""
    pattern = field.get("pattern")
    if pattern is None or not token.startswith(b'"'):
        return False
    try:
        value = json.loads(token)
    except ValueError:  # not JSON, or not UTF-8: hostile wherever it goes
        return False
    return isinstance(value, str) and re.search(pattern, value) is not None


def _with_unknown_fields(value: Any) -> Any:
    if isinstance(value, dict):
        return {**{k: _with_unknown_fields(v) for k, v in value.items()}, UNKNOWN_FIELD: 1}
    if isinstance(value, list):
        return [_with_unknown_fields(v) for v in value]
    return value


def _hostile_bodies(schema: dict[str, Any]) -> Iterator[bytes]:
    for shape, field in _holes(_template(schema), schema):
        text = json.dumps(shape).encode()
        hole = json.dumps(_HOLE).encode()
        for token in VALUE_TOKENS:
            if not _valid_for(field, token):
                yield text.replace(hole, token)
    yield from BODIES


@pytest.mark.parametrize("operation", BODY_OPERATIONS, ids=str)
def test_hostile_bodies_are_refused_quickly(stack, operation):
    assert operation.body_schema is not None
    url = stack.url(operation)
    failures = []
    for body in _hostile_bodies(operation.body_schema):
        problem = _refusal_problem(*stack.send(operation.method, url, body=body))
        if problem:
            failures.append(f"{body[:60]!r}... ({len(body)} bytes): {problem}")
    _assert_refused_quickly(failures, stack, operation)


@pytest.mark.parametrize("operation", BODY_OPERATIONS, ids=str)
def test_a_field_the_operation_does_not_define_is_named_in_a_422(stack, operation):
    assert operation.body_schema is not None
    body = json.dumps(_with_unknown_fields(_template(operation.body_schema))).encode()
    response, elapsed, error = stack.send(operation.method, stack.url(operation), body=body)
    failures = [p for p in [_refusal_problem(response, elapsed, error)] if p]
    # A path naming no real resource may be answered 404 before the body is read.
    if response is not None and stack.fills_every_path_parameter(operation):
        named = {e["field"].split(".")[-1] for e in response.json().get("errors", [])}
        if response.status_code != 422 or UNKNOWN_FIELD not in named:
            failures.append(f"{response.status_code}, naming {sorted(named)}")
    _assert_refused_quickly(failures, stack, operation)


@pytest.mark.parametrize("operation", BODY_OPERATIONS, ids=str)
def test_wrong_content_types_are_415(stack, operation):
    url = stack.url(operation)
    failures = []
    for content_type in WRONG_CONTENT_TYPES:
        response, elapsed, error = stack.send(
            operation.method, url, body=b"a=1", content_type=content_type
        )
        problem = _refusal_problem(response, elapsed, error)
        if problem is None and response is not None and response.status_code != 415:
            problem = f"{response.status_code}, not 415"
        if problem:
            failures.append(f"{content_type}: {problem}")
    _assert_refused_quickly(failures, stack, operation)


# --- methods, paths, queries, headers -----------------------------------------------------------


@pytest.mark.parametrize(("service", "path"), PATHS, ids=lambda p: str(p))
def test_unknown_methods_are_refused(stack, service, path):
    operation = next(op for op in OPERATIONS if (op.service, op.path) == (service, path))
    url = stack.url(operation)
    failures = []
    for method in UNKNOWN_METHODS:
        problem = _refusal_problem(*stack.send(method, url, body=b"{}"))
        if problem:
            failures.append(f"{method}: {problem}")
    metrics = requests.get(stack.urls[service] + "/metrics", timeout=5).text
    failures += [f"{m} is a metrics label" for m in UNKNOWN_METHODS if f'method="{m}"' in metrics]
    _assert_refused_quickly(failures, stack, operation)


@pytest.mark.parametrize("operation", PATH_PARAMETER_OPERATIONS, ids=str)
def test_hostile_path_parameters_are_refused(stack, operation):
    failures = []
    for parameter in operation.parameters("path"):
        for segment in HOSTILE_SEGMENTS:
            url = stack.url(operation, {parameter["name"]: segment})
            allowed = _allows(parameter["schema"], segment)  # a caller-chosen reservation id
            response, elapsed, error = stack.send(operation.method, url, body=b"{}")
            problem = _refusal_problem(response, elapsed, error, allow_ok=allowed)
            if problem:
                failures.append(f"{parameter['name']}={segment[:40]}: {problem}")
    _assert_refused_quickly(failures, stack, operation)


def _allows(schema: dict[str, Any], raw: str) -> bool:
    """Whether the spec allows this (percent-encoded) path or query value: then a 2xx is right
    too (a search for "NaN" finds nothing, but it is a fine search)."""
    try:
        value: Any = unquote_to_bytes(raw).decode("utf-8")
    except UnicodeDecodeError:
        return False
    if schema.get("type") == "integer":
        try:
            value = int(value)
        except ValueError:
            return False
    return bool(jsonschema_rs.is_valid(schema, value))


@pytest.mark.parametrize("operation", QUERY_OPERATIONS, ids=str)
def test_hostile_query_values_are_refused(stack, operation):
    failures = []
    for parameter in operation.parameters("query"):
        for raw in HOSTILE_SEGMENTS:
            url = f"{stack.url(operation)}?{parameter['name']}={raw}"
            allowed = _allows(parameter["schema"], raw)
            response, elapsed, error = stack.send(operation.method, url, content_type=None)
            problem = _refusal_problem(response, elapsed, error, allow_ok=allowed)
            if problem:
                failures.append(f"{parameter['name']}={raw[:40]}: {problem}")
    _assert_refused_quickly(failures, stack, operation)


@pytest.mark.parametrize("operation", [op for op in OPERATIONS if op.needs_token], ids=str)
def test_hostile_headers_are_refused(stack, operation):
    url = stack.url(operation, {p["name"]: str(uuid.uuid4()) for p in operation.parameters("path")})
    body = b"{}" if operation.body_schema is not None else None
    failures = []
    for token in HOSTILE_TOKENS:
        headers = {"Authorization": f"Bearer {token}"}
        problem = _refusal_problem(*stack.send(operation.method, url, body=body, headers=headers))
        if problem:
            failures.append(f"token {token[:30]!r}: {problem}")
    for parameter in operation.parameters("header"):
        for value in HOSTILE_HEADER_VALUES:
            headers = {parameter["name"]: value}
            response, elapsed, error = stack.send(operation.method, url, body=body, headers=headers)
            problem = _refusal_problem(response, elapsed, error)
            if problem:
                failures.append(f"{parameter['name']}: {value[:30]!r}: {problem}")
    _assert_refused_quickly(failures, stack, operation)


# --- a body left unread closes its connection ---------------------------------------------------


def _exchange(url: str, request_head: bytes, body: bytes) -> tuple[bytes, bool]:
    """Sends one request on a fresh connection (the body from a thread, since the server may
    answer before reading it); returns the response head and whether the server then closed."""
    host, port = url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=5) as connection:
        connection.sendall(request_head)
        sender = threading.Thread(target=_send_quietly, args=(connection, body), daemon=True)
        sender.start()
        received = b""
        while b"\r\n\r\n" not in received:
            chunk = connection.recv(65536)
            if not chunk:
                break
            received += chunk
        head, _, rest = received.partition(b"\r\n\r\n")
        length = int(_header(head, b"content-length") or b"0")
        while len(rest) < length:
            rest += connection.recv(65536)
        sender.join(timeout=5)
        return head, _closed_by_server(connection)


def _send_quietly(connection: socket.socket, body: bytes) -> None:
    with contextlib.suppress(OSError):  # the server closed first: what is being tested
        connection.sendall(body)


def _closed_by_server(connection: socket.socket) -> bool:
    connection.settimeout(2)
    try:
        return connection.recv(1) == b""
    except ConnectionResetError:
        return True
    except TimeoutError:
        return False


def _header(head: bytes, name: bytes) -> bytes | None:
    for line in head.split(b"\r\n")[1:]:
        key, _, value = line.partition(b":")
        if key.strip().lower() == name:
            return value.strip()
    return None


# One body endpoint per service: the user service's is gthread, the order service's gevent.
BODY_ENDPOINTS = {
    "user_service": "/api/v1/login",
    "product_service": "/api/v1/products",
    "order_service": "/api/v1/orders",
}


def _framed(body: bytes, *, chunked: bool) -> tuple[str, bytes]:
    """The framing header and the bytes on the wire for `body`."""
    if chunked:
        return "Transfer-Encoding: chunked", b"%x\r\n%s\r\n0\r\n\r\n" % (len(body), body)
    return f"Content-Length: {len(body)}", body


@pytest.mark.parametrize("service", SERVICES)
@pytest.mark.parametrize(
    ("size", "chunked", "content_type", "status"),
    [
        (2 << 20, False, "application/json", 413),
        (2 << 20, True, "application/json", 413),  # refused part way through reading it
        (MAX_BODY_BYTES, False, "text/plain", 415),
    ],
)
def test_a_body_left_unread_closes_the_connection(
    stack, service, size, chunked, content_type, status
):
    framing, wire = _framed(b"[" * size, chunked=chunked)
    head = (
        f"POST {BODY_ENDPOINTS[service]} HTTP/1.1\r\nHost: shop\r\n"
        f"Authorization: Bearer {stack.token}\r\nContent-Type: {content_type}\r\n{framing}\r\n\r\n"
    ).encode()
    response_head, closed = _exchange(stack.urls[service], head, wire)
    assert response_head.split(b" ")[1] == str(status).encode(), response_head
    assert _header(response_head, b"connection") == b"close", response_head
    assert closed
    assert requests.get(stack.urls[service] + "/health", timeout=QUICK_S).status_code == 200


@pytest.mark.parametrize("service", SERVICES)
def test_a_body_that_was_read_keeps_the_connection_alive(stack, service):
    path = BODY_ENDPOINTS[service]
    body = b'{"unknown": 1}'
    head = (
        f"POST {path} HTTP/1.1\r\nHost: shop\r\nAuthorization: Bearer {stack.token}\r\n"
        f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
    ).encode()
    response_head, closed = _exchange(stack.urls[service], head, body)
    assert response_head.split(b" ")[1] == b"422", response_head
    assert _header(response_head, b"connection") == b"keep-alive", response_head
    assert not closed
