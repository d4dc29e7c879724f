"""Turning request bodies and query strings into validated models, or a clear 4xx.

Every input is bounded before it is converted: a body's nesting is measured before it is
parsed, and each number is checked while it is still text, so no request of a few bytes can buy
seconds of CPU or exhaust the parser's recursion.
"""

from __future__ import annotations

import json
import re
from decimal import Decimal
from itertools import accumulate
from typing import Annotated, Any, TypeVar
from urllib.parse import unquote_to_bytes

from flask import g, request
from pydantic import AfterValidator, BaseModel, BeforeValidator, ValidationError
from werkzeug.exceptions import RequestEntityTooLarge

from common.errors import BadRequest, Unprocessable, UnsupportedMediaType, field_error

M = TypeVar("M", bound=BaseModel)

# No Shop body nests deeper than 4 (a batch of reservations of items of fields); much deeper is
# an attack on the parser's recursion, refused before parsing.
MAX_JSON_DEPTH = 32
# The longest number a Shop field holds is a 13-character amount (DECIMAL(12,2)). Within these
# bounds int(), Decimal arithmetic and comparisons cost microseconds; outside them a number is
# refused while still text (int(Decimal("1e600000")) alone takes seconds).
MAX_NUMBER_CHARS = 40
MAX_NUMBER_EXPONENT = 40

# A JSON string, possessively matched so that text never scans twice, and an unterminated one
# runs to the end instead of being retried from every later quote.
_JSON_STRING = re.compile(r'"(?:[^"\\]++|\\.)*+(?:"|\\?\Z)', re.DOTALL)
_NOT_A_BRACKET = re.compile(r"[^\[\]{}]+")


def json_body(model: type[M]) -> M:
    if request.mimetype != "application/json":
        raise UnsupportedMediaType("Send the body as application/json.")
    return validate(model, parse_json(read_body()))


def read_body() -> bytes:
    raw = request.get_data(cache=False)  # over MAX_CONTENT_LENGTH this raises 413
    if _cut_short_at_the_limit(raw):
        raise RequestEntityTooLarge()
    g.request_body_read = True
    return raw


def _cut_short_at_the_limit(raw: bytes) -> bool:
    # A chunked body declares no length to refuse up front: werkzeug stops reading at the limit
    # and hands on the body cut short. One more byte tells whether it was.
    limit = request.max_content_length
    return (
        request.content_length is None
        and limit is not None
        and len(raw) >= limit
        and bool(request.environ["wsgi.input"].read(1))
    )


def body_left_unread() -> bool:
    """The client sent a body this request never read (refused before or instead of reading
    it): the connection must close, or those bytes would be taken for the next request."""
    sent_body = (
        bool(request.content_length)
        or "chunked" in request.headers.get("Transfer-Encoding", "").lower()
    )
    return sent_body and not g.get("request_body_read", False)


def parse_json(raw: bytes) -> Any:
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise BadRequest(f"The body is not valid UTF-8: {exc}") from exc
    if nesting_depth(text) > MAX_JSON_DEPTH:
        raise BadRequest(f"The body is nested more than {MAX_JSON_DEPTH} levels deep.")
    try:
        # Decimals, not floats: a price of 19.99 must stay exactly 19.99.
        return json.loads(
            text,
            parse_int=_bounded_int,
            parse_float=_bounded_decimal,
            parse_constant=_reject_constant,
        )
    except ValueError as exc:
        raise BadRequest(f"The body is not valid JSON: {exc}") from exc


def nesting_depth(text: str) -> int:
    """How deep the arrays and objects of a JSON text nest, without parsing it (and so without
    recursion): the brackets outside strings, counted in one pass."""
    brackets = _NOT_A_BRACKET.sub("", _JSON_STRING.sub("", text))
    return max(accumulate(1 if bracket in "[{" else -1 for bracket in brackets), default=0)


def _bounded_int(text: str) -> int:
    return int(_short_number(text))


def _bounded_decimal(text: str) -> Decimal:
    number = Decimal(_short_number(text))
    if abs(number.adjusted()) > MAX_NUMBER_EXPONENT:
        raise _number_out_of_range(text)
    return number


def _short_number(text: str) -> str:
    if len(text) > MAX_NUMBER_CHARS:
        raise _number_out_of_range(text)
    return text


def _number_out_of_range(text: str) -> Unprocessable:
    shown = text if len(text) <= 20 else f"{text[:20]}…"
    return Unprocessable(
        "A number in the body is out of range.",
        errors=[
            field_error(
                "",
                f"{shown}: a number may have at most {MAX_NUMBER_CHARS} characters and a "
                f"magnitude between 1e-{MAX_NUMBER_EXPONENT} and 1e{MAX_NUMBER_EXPONENT}",
            )
        ],
    )


def query_params(model: type[M]) -> M:
    try:
        unquote_to_bytes(request.query_string).decode("utf-8")
    except UnicodeDecodeError as exc:
        # Werkzeug would quietly turn the bytes into U+FFFD; a client sending them has a bug.
        raise BadRequest("The query string is not valid UTF-8 once percent-decoded.") from exc
    return validate(model, request.args.to_dict())


def validate(model: type[M], data: Any) -> M:
    if not isinstance(data, dict):
        raise Unprocessable(
            "The body must be a JSON object.", errors=[field_error("", "expected an object")]
        )
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise Unprocessable(
            "The request is invalid.", errors=[_as_field_error(e) for e in exc.errors()]
        ) from exc


def _as_field_error(error: Any) -> dict[str, str]:
    field = ".".join(str(part) for part in error["loc"])
    return field_error(field, str(error["msg"]))


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


# C0 controls but tab, line feed and carriage return; DEL; C1 controls. NUL truncates text in C
# consumers, and the others are terminal escapes when a name is printed (`shopctl`).
_CONTROL_CHARACTERS = r"\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f"
_CONTROL_CHARACTER = re.compile(f"[{_CONTROL_CHARACTERS}]")
# What the OpenAPI documents state for stored free text.
STORABLE_TEXT_PATTERN = f"^[^{_CONTROL_CHARACTERS}]*$"


def _storable_text(value: str) -> str:
    # JSON may carry lone surrogates ("\ud800"), which no database encoding can store.
    try:
        value.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise ValueError("must be valid Unicode text") from exc
    if _CONTROL_CHARACTER.search(value):
        raise ValueError("must not contain control characters (tab and line breaks are fine)")
    return value


# A pydantic field type for free text that will be stored: valid UTF-8 once encoded, and no
# control characters.
StorableText = Annotated[str, AfterValidator(_storable_text)]


def _json_integer(value: Any) -> Any:
    # JSON Schema counts 1.0 and 1e2 as integers; json_body parses them as Decimal. Only a
    # Decimal of bounded magnitude is converted: int() of a huge exponent is the expensive step,
    # so a value from anywhere but json_body is bounded here too.
    if (
        isinstance(value, Decimal)
        and value.is_finite()
        and abs(value.adjusted()) <= MAX_NUMBER_EXPONENT
        and value == value.to_integral_value()
    ):
        return int(value)
    return value


# A pydantic field type for a JSON integer, in strict models too: 3, 3.0 and 3e0 are all 3.
JsonInt = Annotated[int, BeforeValidator(_json_integer)]


def present_means_a_value(value: Any) -> Any:
    """For a PATCH model, as `field_validator(<fields>, mode="before")(present_means_a_value)`:
    a field left out stays as it is, but null is no value for it."""
    if value is None:
        raise ValueError("must not be null")
    return value


def require_distinct(values: list[str], what: str) -> None:
    """For a model validator: the same product (or id) twice in one list is a client error."""
    if len(set(values)) != len(values):
        raise ValueError(f"each {what} may appear at most once")
