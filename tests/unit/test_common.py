"""Pure logic of the common package: no I/O."""

from __future__ import annotations

import re
from decimal import Decimal
from pathlib import Path

import pytest
import yaml
from hypothesis import given
from hypothesis import strategies as st

from common.errors import Unprocessable
from common.ids import is_canonical_uuid, new_id
from common.money import format_money, parse_money
from common.pagination import decode_cursor, encode_cursor


def test_new_ids_are_canonical_uuid7_in_creation_order():
    ids = [new_id() for _ in range(200)]
    assert all(is_canonical_uuid(i) for i in ids)
    assert all(i[14] == "7" for i in ids)
    assert ids == sorted(ids)


@pytest.mark.parametrize(
    "value", ["", "abc", "01A21113-12AF-7A1D-9213-90B0E99E75CC", "{" + "0" * 32 + "}"]
)
def test_non_canonical_uuids_are_refused(value):
    assert not is_canonical_uuid(value)


@given(st.uuids())
def test_cursor_round_trips(value):
    assert decode_cursor(encode_cursor(str(value))) == str(value)


@pytest.mark.parametrize(
    "cursor", ["", "!!!", "bm90LWpzb24", encode_cursor("not-a-uuid"), "eyJhZnRlciI6IDF9"]
)
def test_foreign_cursors_are_422(cursor):
    with pytest.raises(Unprocessable):
        decode_cursor(cursor)


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("19.99", "19.99"),
        (Decimal("19.9"), "19.90"),
        (19, "19.00"),
        ("0", "0.00"),
        (" 5.5 ", "5.50"),
    ],
)
def test_money_accepts_strings_and_numbers(raw, expected):
    assert format_money(parse_money(raw)) == expected


@pytest.mark.parametrize(
    "raw",
    ["-1", Decimal("-0.01"), "NaN", "Infinity", "1.999", "abc", True, None, [], "1e3000", 1.5],
)
def test_money_refuses_what_the_contract_forbids(raw):
    with pytest.raises(ValueError):  # noqa: PT011
        parse_money(raw)


def test_the_email_rule_is_the_one_the_spec_states():
    from user_service.api import EMAIL_PATTERN

    spec = yaml.safe_load(Path("user_service/openapi.yaml").read_text())
    assert (
        spec["components"]["schemas"]["RegisterUser"]["properties"]["email"]["pattern"]
        == EMAIL_PATTERN
    )
    assert re.match(EMAIL_PATTERN, "alice@example.com")


@pytest.mark.parametrize(
    ("header", "matches"),
    [
        (None, True),
        ("*", True),
        ('"abc"', True),
        ('"x", "abc"', True),
        ('W/"abc"', False),
        ('"abd"', False),
        ("", False),
    ],
)
def test_if_match_uses_the_strong_comparison(header, matches):
    from common.etags import if_match_satisfied

    assert if_match_satisfied(header, '"abc"') is matches


def test_etags_follow_the_representation_not_key_order():
    from common.etags import strong_etag

    assert strong_etag({"a": 1, "b": "2"}) == strong_etag({"b": "2", "a": 1})
    assert strong_etag({"a": 1}) != strong_etag({"a": 2})
    assert strong_etag({"a": 1}).startswith('"') and strong_etag({"a": 1}).endswith('"')


@pytest.mark.parametrize("raw", [" 5", "5 ", "1e2", "+5", ".5", "5.", "1_000", "-0", "12345678901"])
def test_money_inputs_hold_strings_to_the_documented_pattern(raw):
    from common.money import parse_money_input

    with pytest.raises(ValueError):  # noqa: PT011
        parse_money_input(raw)


@pytest.mark.parametrize(
    ("raw", "expected"), [("5", "5.00"), ("0.5", "0.50"), (Decimal("1e2"), "100.00")]
)
def test_money_inputs_accept_plain_decimals_and_numbers(raw, expected):
    from common.money import parse_money_input

    assert format_money(parse_money_input(raw)) == expected


def test_json_integers_include_integral_decimals_only():
    from pydantic import BaseModel, ConfigDict, ValidationError

    from common.inputs import JsonInt

    class Model(BaseModel):
        model_config = ConfigDict(strict=True)
        n: JsonInt

    assert Model.model_validate({"n": Decimal("3.0")}).n == 3
    assert Model.model_validate({"n": Decimal("1E+2")}).n == 100
    for bad in (Decimal("1.5"), "3", True, Decimal("NaN")):
        with pytest.raises(ValidationError):
            Model.model_validate({"n": bad})


def test_storable_text_refuses_lone_surrogates():
    from pydantic import TypeAdapter, ValidationError

    from common.inputs import StorableText

    adapter = TypeAdapter(StorableText)
    assert adapter.validate_python("héllo ✓") == "héllo ✓"
    with pytest.raises(ValidationError):
        adapter.validate_python("bad \ud800")


def test_the_product_patterns_are_the_ones_the_spec_states():
    from common.money import MONEY_TEXT_PATTERN
    from product_service.api import RESERVATION_ID_PATTERN

    schemas = yaml.safe_load(Path("product_service/openapi.yaml").read_text())["components"][
        "schemas"
    ]
    assert schemas["MoneyText"]["pattern"] == MONEY_TEXT_PATTERN
    assert schemas["ReservationId"]["pattern"] == RESERVATION_ID_PATTERN
