"""The user service's rules and its openapi.yaml say the same thing."""

from __future__ import annotations

from pathlib import Path

import sqlalchemy as sa
import yaml

from user_service.address_repository import MAX_LENGTHS, addresses
from user_service.countries import ASSIGNED_COUNTRY_CODES
from user_service.phones import E164_MAX_LENGTH, E164_PATTERN

SCHEMAS = yaml.safe_load(Path("user_service/openapi.yaml").read_text())["components"]["schemas"]
SPEC_NAMES = {
    "label": "Label",
    "recipient": "Recipient",
    "line1": "AddressLine",
    "line2": "AddressLine",
    "city": "City",
    "region": "Region",
    "postal_code": "PostalCode",
}


def test_the_spec_lists_exactly_the_assigned_country_codes():
    # Quoted in the YAML: a bare NO (Norway) would read as false.
    assert set(SCHEMAS["Country"]["enum"]) == ASSIGNED_COUNTRY_CODES
    assert len(ASSIGNED_COUNTRY_CODES) == 249
    assert {"GB", "NO", "US", "SS", "BQ"} <= ASSIGNED_COUNTRY_CODES
    assert not {"XX", "ZZ", "UK", "EU", "AN", "YU"} & ASSIGNED_COUNTRY_CODES


def test_the_phone_rule_is_the_one_the_spec_states():
    assert SCHEMAS["Phone"]["pattern"] == E164_PATTERN
    assert len("+" + "9" * 15) == E164_MAX_LENGTH


def test_address_text_limits_are_the_same_in_the_spec_and_the_table():
    for field, spec_name in SPEC_NAMES.items():
        assert SCHEMAS[spec_name]["maxLength"] == MAX_LENGTHS[field], field
        column_type = addresses.c[field].type
        assert isinstance(column_type, sa.String)
        assert column_type.length == MAX_LENGTHS[field], field
