"""HTTP routes of the address book: parse, authorise, call the address book, render."""

from __future__ import annotations

from typing import Annotated, Any

from flask import Blueprint, Response, current_app, jsonify, url_for
from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    field_validator,
)

from common.auth import ADMIN, CUSTOMER, SERVICE, current_principal, require_roles
from common.db import isoformat
from common.inputs import StorableText, json_body, present_means_a_value, query_params
from common.pagination import PageQuery, page_of
from user_service.address_repository import MAX_LENGTHS, Address, AddressFields
from user_service.addresses import AddressBook
from user_service.countries import ASSIGNED_COUNTRY_CODES
from user_service.phones import Phone

address_api = Blueprint("addresses", __name__)


def _assigned_country(code: str) -> str:
    if code not in ASSIGNED_COUNTRY_CODES:
        raise ValueError("must be an assigned ISO 3166-1 alpha-2 code, in upper case")
    return code


Country = Annotated[
    str, StringConstraints(pattern=r"^[A-Z]{2}$"), AfterValidator(_assigned_country)
]
Label = Annotated[StorableText, StringConstraints(min_length=1, max_length=MAX_LENGTHS["label"])]
Recipient = Annotated[
    StorableText, StringConstraints(min_length=1, max_length=MAX_LENGTHS["recipient"])
]
Line = Annotated[StorableText, StringConstraints(min_length=1, max_length=MAX_LENGTHS["line1"])]
City = Annotated[StorableText, StringConstraints(min_length=1, max_length=MAX_LENGTHS["city"])]
Region = Annotated[StorableText, StringConstraints(min_length=1, max_length=MAX_LENGTHS["region"])]
PostalCode = Annotated[
    StorableText, StringConstraints(min_length=1, max_length=MAX_LENGTHS["postal_code"])
]
_REQUIRED = ("recipient", "line1", "city", "postal_code", "country")


class NewAddress(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)

    label: Label | None = None
    recipient: Recipient
    line1: Line
    line2: Line | None = None
    city: City
    region: Region | None = None
    postal_code: PostalCode = Field(alias="postalCode")
    country: Country
    phone: Phone | None = None

    def fields(self) -> AddressFields:
        return AddressFields(**self.model_dump())


class AddressPatch(BaseModel):
    """Absent fields stay as they are; null clears an optional one."""

    model_config = ConfigDict(extra="forbid", strict=True)

    label: Label | None = None
    recipient: Recipient | None = None
    line1: Line | None = None
    line2: Line | None = None
    city: City | None = None
    region: Region | None = None
    postal_code: PostalCode | None = Field(default=None, alias="postalCode")
    country: Country | None = None
    phone: Phone | None = None

    # Every address has these: a PATCH may change them, never clear them.
    _present_means_a_value = field_validator(*_REQUIRED, mode="before")(present_means_a_value)

    def changes(self) -> dict[str, str | None]:
        return self.model_dump(include=self.model_fields_set)


def address_book() -> AddressBook:
    book: AddressBook = current_app.extensions["address_book"]
    return book


def address_json(address: Address) -> dict[str, Any]:
    fields = address.fields
    return {
        "id": address.id,
        "label": fields.label,
        "recipient": fields.recipient,
        "line1": fields.line1,
        "line2": fields.line2,
        "city": fields.city,
        "region": fields.region,
        "postalCode": fields.postal_code,
        "country": fields.country,
        "phone": fields.phone,
        "createdAt": isoformat(address.created_at),
        "updatedAt": isoformat(address.updated_at),
    }


ADDRESSES = "/api/v1/users/<id:user_id>/addresses"
ONE_ADDRESS = f"{ADDRESSES}/<id:address_id>"


@address_api.post(ADDRESSES)
@require_roles(CUSTOMER, ADMIN)
def add_address(user_id: str) -> tuple[Response, int, dict[str, str]]:
    fields = json_body(NewAddress).fields()
    address = address_book().add(user_id, current_principal(), fields)
    location = url_for("addresses.get_address", user_id=user_id, address_id=address.id)
    return jsonify(address_json(address)), 201, {"Location": location}


@address_api.get(ADDRESSES)
@require_roles(CUSTOMER, ADMIN, SERVICE)
def list_addresses(user_id: str) -> Response:
    query = query_params(PageQuery)
    rows = address_book().page(
        user_id, current_principal(), after_id=query.after_id(), limit=query.limit + 1
    )
    return jsonify(page_of(rows, query.limit, id_of=lambda a: a.id, render=address_json))


@address_api.get(ONE_ADDRESS)
@require_roles(CUSTOMER, ADMIN, SERVICE)
def get_address(user_id: str, address_id: str) -> Response:
    return jsonify(address_json(address_book().get(user_id, address_id, current_principal())))


@address_api.patch(ONE_ADDRESS)
@require_roles(CUSTOMER, ADMIN)
def edit_address(user_id: str, address_id: str) -> Response:
    changes = json_body(AddressPatch).changes()
    address = address_book().edit(user_id, address_id, current_principal(), changes)
    return jsonify(address_json(address))


@address_api.delete(ONE_ADDRESS)
@require_roles(CUSTOMER, ADMIN)
def remove_address(user_id: str, address_id: str) -> tuple[str, int]:
    address_book().remove(user_id, address_id, current_principal())
    return "", 204
