"""Turning request bodies and query strings into validated models, or a clear 4xx."""

from __future__ import annotations

import json
from decimal import Decimal
from typing import Annotated, Any, TypeVar

from flask import request
from pydantic import AfterValidator, BaseModel, BeforeValidator, ValidationError

from common.errors import BadRequest, Unprocessable, UnsupportedMediaType, field_error

M = TypeVar("M", bound=BaseModel)


def json_body(model: type[M]) -> M:
    if request.mimetype != "application/json":
        raise UnsupportedMediaType("Send the body as application/json.")
    raw = request.get_data(cache=False)  # over MAX_CONTENT_LENGTH this raises 413
    try:
        # Decimals, not floats: a price of 19.99 must stay exactly 19.99.
        data = json.loads(raw, parse_float=Decimal, parse_constant=_reject_constant)
    except (ValueError, UnicodeDecodeError) as exc:
        raise BadRequest(f"The body is not valid JSON: {exc}") from exc
    return validate(model, data)


def query_params(model: type[M]) -> M:
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


def _storable_text(value: str) -> str:
    # JSON may carry lone surrogates ("\ud800"), which no database encoding can store.
    try:
        value.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise ValueError("must be valid Unicode text") from exc
    return value


# A pydantic field type for free text that will be stored: valid UTF-8 once encoded.
StorableText = Annotated[str, AfterValidator(_storable_text)]


def _json_integer(value: Any) -> Any:
    # JSON Schema counts 1.0 and 1e2 as integers; json_body parses them as Decimal.
    if isinstance(value, Decimal) and value.is_finite() and value == value.to_integral_value():
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
