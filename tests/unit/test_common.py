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
