"""`<name>@accounts.shop.invalid` belongs to the configured admin and service accounts: public
sign-up cannot take one, and `prestart` creates its account even if a customer holds it."""

from __future__ import annotations

import pytest

from common.db import utcnow
from common.ids import new_id
from tests.integration.users.test_user_api import assert_problem, login, register, unique
from user_service.repository import User, UserRepository


@pytest.mark.parametrize(
    "domain", ["accounts.shop.invalid", "ACCOUNTS.Shop.INVALID", "eu.accounts.shop.invalid"]
)
def test_sign_up_cannot_take_an_address_at_the_reserved_domain(client, domain):
    username = unique()
    refused = register(client, username, f"order-service@{domain}")
    body = assert_problem(refused, 422)
    assert [error["field"] for error in body["errors"]] == ["email"]
    assert "accounts.shop.invalid" in body["errors"][0]["message"]
    assert register(client, username).status_code == 201, "the refusal created nothing"


@pytest.mark.parametrize("email", ["x@myaccounts.shop.invalid", "x@accounts.shop.invalid.example"])
def test_neighbouring_domains_are_not_reserved(client, email):
    assert register(client, unique(), email.replace("x@", f"{unique()}@")).status_code == 201


def test_a_configured_account_is_created_even_if_a_customer_holds_its_address(user_app):
    """A customer who signed up before the domain was reserved keeps their address, and the
    configured account gets a free variant of it instead of failing `prestart` for ever."""
    client = user_app.test_client()
    name = unique("svc")
    squatter_id = new_id()
    db = user_app.extensions["database"]
    now = utcnow()
    with db.transaction() as connection:
        UserRepository(connection).add(
            User(squatter_id, unique(), f"{name}@accounts.shop.invalid", "x", "customer", now, now)
        )
    service = user_app.extensions["user_service"]
    account = service.ensure_account(name, "s3cret-pass", "service")
    assert account.role == "service" and account.id != squatter_id
    assert account.email.endswith("@accounts.shop.invalid")
    assert account.email != f"{name}@accounts.shop.invalid"
    assert service.ensure_account(name, "s3cret-pass", "service").id == account.id
    assert login(client, name).status_code == 200
    with db.transaction() as connection:
        squatter = UserRepository(connection).get(squatter_id)
    assert squatter is not None
    assert (squatter.email, squatter.role) == (f"{name}@accounts.shop.invalid", "customer")


def test_a_configured_account_name_logs_in_under_its_placeholder_address(user_app):
    client = user_app.test_client()
    name = unique("adm")
    user_app.extensions["user_service"].ensure_account(name, "s3cret-pass", "admin")
    assert login(client, f"{name.upper()}@accounts.shop.invalid").status_code == 200
    assert_problem(register(client, unique(), f"{name}@accounts.shop.invalid"), 422)
