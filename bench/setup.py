"""Users and products the load runs against, created through the public API."""

from __future__ import annotations

import random
import uuid
from dataclasses import dataclass

import requests

from bench.load import Shopper
from bench.system import ADMIN, System

INITIAL_STOCK = 1_000_000


@dataclass(frozen=True)
class Catalog:
    admin_token: str
    product_ids: list[str]
    shoppers: list[Shopper]


def login(system: System, username: str, password: str) -> str:
    response = requests.post(
        f"{system.url('user_service')}/api/v1/login",
        json={"username": username, "password": password},
        timeout=10,
    )
    response.raise_for_status()
    return str(response.json()["accessToken"])


def create_catalog(system: System, *, products: int, shoppers: int) -> Catalog:
    admin_token = login(system, *ADMIN)
    rng = random.Random(11)
    product_ids = [
        _create_product(
            system, admin_token, f"Bench item {n}", f"{rng.randint(100, 9999) / 100:.2f}"
        )
        for n in range(products)
    ]
    return Catalog(admin_token, product_ids, [_shopper(system) for _ in range(shoppers)])


def _price(rng: random.Random) -> str:
    return f"{rng.randint(100, 9999) / 100:.2f}"


def _create_product(system: System, admin_token: str, name: str, price: str) -> str:
    response = requests.post(
        f"{system.url('product_service')}/api/v1/products",
        json={"name": name, "description": "load test", "price": price, "stock": INITIAL_STOCK},
        headers={"Authorization": f"Bearer {admin_token}"},
        timeout=10,
    )
    response.raise_for_status()
    return str(response.json()["id"])


def _shopper(system: System) -> Shopper:
    username = f"bench_{uuid.uuid4().hex[:10]}"
    password = uuid.uuid4().hex
    response = requests.post(
        f"{system.url('user_service')}/api/v1/users",
        json={"username": username, "email": f"{username}@example.com", "password": password},
        timeout=10,
    )
    response.raise_for_status()
    return Shopper(login(system, username, password))
