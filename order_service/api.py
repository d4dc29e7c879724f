"""HTTP routes: parse, authorise, call the service, render. Nothing else lives here."""

from __future__ import annotations

import re
from typing import Annotated, Literal

from flask import Blueprint, Response, current_app, jsonify, request, url_for
from pydantic import BaseModel, ConfigDict, Field, StringConstraints, field_validator

from common.auth import ADMIN, CUSTOMER, current_principal, require_roles
from common.errors import Unprocessable, field_error
from common.ids import CANONICAL_UUID_PATTERN
from common.inputs import JsonInt, json_body, query_params, require_distinct
from common.pagination import PageQuery, page_of
from order_service.clients import ReservationLine
from order_service.orders_repository import Order, OrderFilter
from order_service.service import (
    OrderService,
    PlaceOrder,
    order_details_representation,
    order_representation,
)

api = Blueprint("orders", __name__)

Id = Annotated[str, StringConstraints(pattern=CANONICAL_UUID_PATTERN)]
MAX_ITEMS, MAX_QUANTITY = 50, 1000
# Printable ASCII: the key travels in headers and logs, and is compared byte for byte.
_IDEMPOTENCY_KEY = re.compile(r"^[\x20-\x7e]{1,255}$")


class OrderItem(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)

    productId: Id  # noqa: N815 - the contract's camelCase field name
    quantity: Annotated[JsonInt, Field(ge=1, le=MAX_QUANTITY)]


class NewOrder(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)

    userId: Id | None = None  # noqa: N815
    items: Annotated[list[OrderItem], Field(min_length=1, max_length=MAX_ITEMS)]
    shippingAddressId: Id | None = None  # noqa: N815

    @field_validator("items")
    @classmethod
    def _each_product_once(cls, items: list[OrderItem]) -> list[OrderItem]:
        require_distinct([item.productId for item in items], "product")
        return items

    def command(self, idempotency_key: str | None) -> PlaceOrder:
        lines = tuple(ReservationLine(item.productId, item.quantity) for item in self.items)
        return PlaceOrder(self.userId, lines, idempotency_key, self.shippingAddressId)


class OrderListQuery(PageQuery):
    status: Literal["PENDING", "PAID", "CANCELLED"] | None = None
    user_id: Id | None = Field(default=None, alias="userId")

    def filter(self) -> OrderFilter:
        return OrderFilter(user_id=self.user_id, status=self.status)


def orders() -> OrderService:
    service: OrderService = current_app.extensions["order_service"]
    return service


def _idempotency_key() -> str | None:
    key = request.headers.get("Idempotency-Key")
    if key is not None and not _IDEMPOTENCY_KEY.match(key):
        raise Unprocessable(
            "The Idempotency-Key must be 1 to 255 printable ASCII characters.",
            errors=[field_error("Idempotency-Key", "1 to 255 printable ASCII characters")],
        )
    return key


def _order_json(order: Order, status: int = 200) -> tuple[Response, int]:
    return jsonify(order_representation(order)), status


@api.post("/api/v1/orders")
@require_roles(CUSTOMER, ADMIN)
def place_order() -> tuple[Response, int, dict[str, str]]:
    command = json_body(NewOrder).command(_idempotency_key())
    placed = orders().place_order(command, current_principal())
    body, status = _order_json(placed.order, 200 if placed.replayed else 201)
    return body, status, {"Location": url_for("orders.get_order", order_id=placed.order.id)}


@api.get("/api/v1/orders")
@require_roles(CUSTOMER, ADMIN)
def list_orders() -> Response:
    query = query_params(OrderListQuery)
    rows = orders().list_orders(
        current_principal(), query.filter(), query.after_id(), query.limit + 1
    )
    return jsonify(page_of(rows, query.limit, id_of=lambda o: o.id, render=order_representation))


@api.get("/api/v1/orders/<id:order_id>")
@require_roles(CUSTOMER, ADMIN)
def get_order(order_id: str) -> tuple[Response, int]:
    return _order_json(orders().get_order(order_id, current_principal()))


@api.get("/api/v1/orders/<id:order_id>/details")
@require_roles(CUSTOMER, ADMIN)
def get_order_details(order_id: str) -> Response:
    return jsonify(
        order_details_representation(orders().order_details(order_id, current_principal()))
    )


@api.post("/api/v1/orders/<id:order_id>/pay")
@require_roles(CUSTOMER, ADMIN)
def pay_order(order_id: str) -> tuple[Response, int]:
    return _order_json(orders().pay_order(order_id, current_principal()))


@api.post("/api/v1/orders/<id:order_id>/cancel")
@require_roles(CUSTOMER, ADMIN)
def cancel_order(order_id: str) -> tuple[Response, int]:
    return _order_json(orders().cancel_order(order_id, current_principal()))
