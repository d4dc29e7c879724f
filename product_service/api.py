"""HTTP routes: parse, authorise, call the service, render. Nothing else lives here."""

from __future__ import annotations

import re
from decimal import Decimal
from typing import Annotated, Any, Literal

from flask import Blueprint, Response, current_app, jsonify, request, url_for
from pydantic import BaseModel, ConfigDict, Field, StringConstraints, field_validator

from common.auth import ADMIN, SERVICE, require_roles
from common.errors import NotFound, Problem, Unprocessable, field_error, problem_of
from common.ids import is_canonical_uuid
from common.inputs import (
    JsonInt,
    StorableText,
    json_body,
    present_means_a_value,
    query_params,
    require_distinct,
)
from common.money import MONEY_TEXT_PATTERN, MoneyInput, format_money, parse_money
from common.pagination import PageQuery, page_of
from product_service.repository import Product, ReservationLine, SearchFilter
from product_service.search_words import query_words
from product_service.service import (
    ProductChanges,
    ProductFields,
    ProductService,
    Reservation,
    StockReservation,
    etag_of,
    product_representation,
)

api = Blueprint("products", __name__)

Name = Annotated[StorableText, StringConstraints(min_length=1, max_length=200)]
Description = Annotated[StorableText, StringConstraints(max_length=5000)]
Stock = Annotated[JsonInt, Field(ge=0, le=1_000_000_000)]
Quantity = Annotated[JsonInt, Field(ge=1, le=1_000_000)]
# Callers choose reservation ids (the order service uses its attempt id); they travel in paths.
RESERVATION_ID_PATTERN = r"^[A-Za-z0-9._:-]{1,64}$"
ReservationId = Annotated[str, StringConstraints(pattern=RESERVATION_ID_PATTERN)]
ProductId = Annotated[str, StringConstraints(min_length=36, max_length=36)]
MAX_IDS = 100
MAX_RESERVATION_ITEMS = 100
MAX_BATCH_RESERVATIONS = 64
# The most reservations one release request gives back (the order service's expiry round).
MAX_BATCH_RELEASES = 200


class NewProduct(BaseModel):
    """POST and PUT: the whole product."""

    model_config = ConfigDict(extra="forbid", strict=True)

    name: Name
    description: Description = ""
    price: MoneyInput
    stock: Stock

    def fields(self) -> ProductFields:
        return ProductFields(self.name, self.description, self.price, self.stock)


class ProductPatch(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)

    name: Name | None = None
    description: Description | None = None
    price: MoneyInput | None = None
    stock: Stock | None = None

    # Absent fields stay as they are; null is not a way to clear one.
    _present_means_a_value = field_validator("*", mode="before")(present_means_a_value)

    def changes(self) -> ProductChanges:
        return ProductChanges(self.name, self.description, self.price, self.stock)


class ReserveStock(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)

    reservationId: ReservationId  # noqa: N815 - the contract's camelCase field name
    quantity: Quantity


class ReleaseStock(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)

    reservationId: ReservationId  # noqa: N815


class ReservationItem(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)

    productId: ProductId  # noqa: N815
    quantity: Quantity


class ReserveItems(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)

    reservationId: ReservationId  # noqa: N815
    items: Annotated[list[ReservationItem], Field(min_length=1, max_length=MAX_RESERVATION_ITEMS)]

    @field_validator("items")
    @classmethod
    def _each_product_once(cls, items: list[ReservationItem]) -> list[ReservationItem]:
        require_distinct([item.productId for item in items], "product")
        return items

    def item_pairs(self) -> list[tuple[str, int]]:
        return [(item.productId, item.quantity) for item in self.items]


class ReserveBatch(BaseModel):
    """Several reservations in one request: each is all or nothing on its own. The batch may
    hold as many items in all as one reservation may."""

    model_config = ConfigDict(extra="forbid", strict=True)

    reservations: Annotated[
        list[ReserveItems], Field(min_length=1, max_length=MAX_BATCH_RESERVATIONS)
    ]

    @field_validator("reservations")
    @classmethod
    def _distinct_and_bounded(cls, reservations: list[ReserveItems]) -> list[ReserveItems]:
        require_distinct(
            [reservation.reservationId for reservation in reservations], "reservationId"
        )
        if sum(len(reservation.items) for reservation in reservations) > MAX_RESERVATION_ITEMS:
            raise ValueError(f"at most {MAX_RESERVATION_ITEMS} items in all")
        return reservations

    def requests(self) -> list[tuple[str, list[tuple[str, int]]]]:
        return [(r.reservationId, r.item_pairs()) for r in self.reservations]


class ReleaseBatch(BaseModel):
    """Several reservations given back in one request, each exactly as its own release."""

    model_config = ConfigDict(extra="forbid", strict=True)

    reservationIds: Annotated[  # noqa: N815
        list[ReservationId], Field(min_length=1, max_length=MAX_BATCH_RELEASES)
    ]

    @field_validator("reservationIds")
    @classmethod
    def _distinct(cls, reservation_ids: list[str]) -> list[str]:
        require_distinct(reservation_ids, "reservationId")
        return reservation_ids


class ProductListQuery(PageQuery):
    ids: str | None = None

    def product_ids(self) -> list[str] | None:
        if self.ids is None:
            return None
        ids = list(dict.fromkeys(self.ids.split(",")))
        if not 1 <= len(ids) <= MAX_IDS or not all(is_canonical_uuid(i) for i in ids):
            raise Unprocessable(
                "ids must be 1 to 100 comma-separated product ids.",
                errors=[field_error("ids", "expected comma-separated UUIDs")],
            )
        return ids


QueryMoney = Annotated[str, StringConstraints(pattern=MONEY_TEXT_PATTERN)]


class SearchQuery(PageQuery):
    q: Annotated[StorableText, StringConstraints(min_length=1, max_length=200)] | None = None
    min_price: QueryMoney | None = Field(default=None, alias="minPrice")
    max_price: QueryMoney | None = Field(default=None, alias="maxPrice")
    in_stock: Literal["true", "false"] | None = Field(default=None, alias="inStock")

    @field_validator("q")
    @classmethod
    def _has_searchable_words(cls, q: str | None) -> str | None:
        if q is not None:
            query_words(q)  # refuses, as this field's error, a q the search cannot answer
        return q

    def search(self) -> SearchFilter:
        return SearchFilter(
            words=() if self.q is None else tuple(query_words(self.q)),
            min_price=_money_or_none(self.min_price),
            max_price=_money_or_none(self.max_price),
            in_stock=None if self.in_stock is None else self.in_stock == "true",
        )


def _money_or_none(text: str | None) -> Decimal | None:
    return None if text is None else parse_money(text)


def products() -> ProductService:
    service: ProductService = current_app.extensions["product_service"]
    return service


def product_response(product: Product, status: int = 200) -> tuple[Response, int, dict[str, str]]:
    return jsonify(product_representation(product)), status, {"ETag": etag_of(product)}


def product_page(rows: list[Product], limit: int) -> Response:
    return jsonify(page_of(rows, limit, id_of=lambda p: p.id, render=product_representation))


def stock_reservation_json(held: StockReservation) -> dict[str, Any]:
    return {
        "productId": held.product_id,
        "reservationId": held.reservation_id,
        "quantity": held.quantity,
        "stock": held.stock,
    }


def reservation_json(reservation: Reservation) -> dict[str, Any]:
    return {
        "reservationId": reservation.reservation_id,
        "state": reservation.state,
        "items": [_reservation_item_json(line) for line in reservation.items],
    }


def _batch_result(outcome: Reservation | Problem) -> dict[str, Any]:
    if isinstance(outcome, Problem):
        return {"status": outcome.status, "body": problem_of(outcome)}
    return {"status": 201, "body": reservation_json(outcome)}


def _reservation_item_json(line: ReservationLine) -> dict[str, Any]:
    item: dict[str, Any] = {"productId": line.product_id, "quantity": line.quantity}
    if line.price is not None:
        item["price"] = format_money(line.price)
    if line.name is not None:
        item["name"] = line.name
    return item


@api.post("/api/v1/products")
@require_roles(ADMIN)
def create_product() -> tuple[Response, int, dict[str, str]]:
    product = products().create_product(json_body(NewProduct).fields())
    body, status, headers = product_response(product, 201)
    return (
        body,
        status,
        {**headers, "Location": url_for("products.get_product", product_id=product.id)},
    )


@api.get("/api/v1/products")
def list_products() -> Response:
    query = query_params(ProductListQuery)
    ids = query.product_ids()
    if ids is not None:
        return jsonify(
            {
                "items": [product_representation(p) for p in products().products_by_ids(ids)],
                "nextCursor": None,
            }
        )
    return product_page(products().list_products(query.after_id(), query.limit + 1), query.limit)


@api.get("/api/v1/products/search")
def search_products() -> Response:
    query = query_params(SearchQuery)
    rows = products().search_products(query.search(), query.after_id(), query.limit + 1)
    return product_page(rows, query.limit)


@api.get("/api/v1/products/<id:product_id>")
def get_product(product_id: str) -> tuple[Response, int, dict[str, str]]:
    return product_response(products().get_product(product_id))


@api.put("/api/v1/products/<id:product_id>")
@require_roles(ADMIN)
def replace_product(product_id: str) -> tuple[Response, int, dict[str, str]]:
    fields = json_body(NewProduct).fields()
    return product_response(products().replace_product(product_id, fields, _if_match()))


@api.patch("/api/v1/products/<id:product_id>")
@require_roles(ADMIN)
def patch_product(product_id: str) -> tuple[Response, int, dict[str, str]]:
    changes = json_body(ProductPatch).changes()
    return product_response(products().change_product(product_id, changes, _if_match()))


@api.delete("/api/v1/products/<id:product_id>")
@require_roles(ADMIN)
def archive_product(product_id: str) -> tuple[str, int]:
    products().archive_product(product_id, _if_match())
    return "", 204


@api.post("/api/v1/products/<id:product_id>/reserve")
@require_roles(ADMIN, SERVICE)
def reserve_stock(product_id: str) -> Response:
    command = json_body(ReserveStock)
    held = products().reserve_stock(product_id, command.reservationId, command.quantity)
    return jsonify(stock_reservation_json(held))


@api.post("/api/v1/products/<id:product_id>/release")
@require_roles(ADMIN, SERVICE)
def release_stock(product_id: str) -> Response:
    command = json_body(ReleaseStock)
    return jsonify(
        stock_reservation_json(products().release_stock(product_id, command.reservationId))
    )


@api.post("/api/v1/reservations")
@require_roles(ADMIN, SERVICE)
def reserve_items() -> tuple[Response, int]:
    command = json_body(ReserveItems)
    reservation = products().reserve_items(command.reservationId, command.item_pairs())
    return jsonify(reservation_json(reservation)), 201


@api.post("/api/v1/reservations/batch")
@require_roles(ADMIN, SERVICE)
def reserve_batch() -> Response:
    """What each reservation's own request would have answered, in request order."""
    outcomes = products().reserve_batch(json_body(ReserveBatch).requests())
    return jsonify({"results": [_batch_result(outcome) for outcome in outcomes]})


@api.post("/api/v1/reservations/release")
@require_roles(ADMIN, SERVICE)
def release_batch() -> Response:
    """Each reservation as its own release would answer it, in request order."""
    released = products().release_reservations(json_body(ReleaseBatch).reservationIds)
    return jsonify({"results": [reservation_json(reservation) for reservation in released]})


@api.post("/api/v1/reservations/<reservation_id>/release")
@require_roles(ADMIN, SERVICE)
def release_reservation(reservation_id: str) -> Response:
    if not re.fullmatch(RESERVATION_ID_PATTERN, reservation_id):
        raise NotFound("No such reservation.")
    return jsonify(reservation_json(products().release_reservation(reservation_id)))


def _if_match() -> str | None:
    return request.headers.get("If-Match")
