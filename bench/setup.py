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


@dataclass(frozen=True)
class Account:
    """A customer's credentials, for a bench that logs the same customers in again."""

    username: str
    password: str


def create_catalog(system: System, *, products: int, shoppers: int) -> Catalog:
    return create_catalog_of(system, products=products, accounts=create_accounts(system, shoppers))


def create_catalog_of(system: System, *, products: int, accounts: list[Account]) -> Catalog:
    """`products` new products; the accounts' customers logged in as the shoppers."""
    admin_token = login(system, *ADMIN)
    rng = random.Random(11)
    product_ids = [
        _create_product(
            system, admin_token, f"Bench item {n}", f"{rng.randint(100, 9999) / 100:.2f}"
        )
        for n in range(products)
    ]
    return Catalog(admin_token, product_ids, log_in(system, accounts))


def log_in(system: System, accounts: list[Account]) -> list[Shopper]:
    return [Shopper(login(system, account.username, account.password)) for account in accounts]


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


def create_accounts(system: System, count: int) -> list[Account]:
    return [_account(system) for _ in range(count)]


def _account(system: System) -> Account:
    username = f"bench_{uuid.uuid4().hex[:10]}"
    password = uuid.uuid4().hex
    response = requests.post(
        f"{system.url('user_service')}/api/v1/users",
        json={"username": username, "email": f"{username}@example.com", "password": password},
        timeout=10,
    )
    response.raise_for_status()
    return Account(username, password)
