"""DELETE /users/{id}: the account is closed, its personal data erased, its tokens refused."""

from __future__ import annotations

import uuid

import jwt
import pytest
import sqlalchemy as sa

from tests.integration.users.test_addresses_api import HOME, add, book_of
from tests.integration.users.test_user_api import (
    assert_problem,
    auth,
    login,
    register,
    token_for,
    unique,
)
from user_service.address_repository import addresses
from user_service.repository import users

PASSWORD = "s3cret-pass"


@pytest.fixture
def database(user_db_url):
    engine = sa.create_engine(user_db_url)
    yield engine
    engine.dispose()


@pytest.fixture
def account(client):
    """A customer with a phone, two addresses and a failed login on record."""
    username = unique()
    email = f"{username}@example.com"
    response = client.post(
        "/api/v1/users",
        json={"username": username, "email": email, "password": PASSWORD, "phone": "+14155550123"},
    )
    user_id = response.get_json()["id"]
    token = login(client, username).get_json()["accessToken"]
    for identifier in (username, email):
        assert login(client, identifier, "a-wrong-guess").status_code == 401
    for _ in range(2):
        assert add(client, user_id, token, HOME).status_code == 201
    return {"id": user_id, "username": username, "email": email, "token": token}


def close(client, user_id: str, token: str):
    return client.delete(f"/api/v1/users/{user_id}", headers=auth(token))


class TestClosing:
    def test_the_personal_data_is_gone_from_the_database(self, client, account, database):
        assert close(client, account["id"], account["token"]).status_code == 204
        with database.connect() as connection:
            row = connection.execute(sa.select(users).where(users.c.id == account["id"])).one()
            kept_addresses = connection.execute(
                sa.select(sa.func.count()).where(addresses.c.user_id == account["id"])
            ).scalar_one()
        erased = ("username", "username_key", "email", "email_key", "phone", "password_hash")
        assert {name: row._mapping[name] for name in erased} == dict.fromkeys(erased)
        assert row.closed_at is not None and row.role == "customer"
        assert kept_addresses == 0

    def test_a_closed_account_cannot_log_in_and_answers_like_a_wrong_password(
        self, client, account
    ):
        close(client, account["id"], account["token"])
        for identifier in (account["username"], account["email"]):
            refused = login(client, identifier)
            assert_problem(refused, 401)
            wrong = login(client, unique(), "a-wrong-guess")
            assert refused.get_data() == wrong.get_data()

    def test_the_username_and_email_are_free_again_with_a_new_id(self, client, account):
        close(client, account["id"], account["token"])
        again = register(client, account["username"], account["email"])
        assert again.status_code == 201
        assert again.get_json()["id"] != account["id"]
        assert login(client, account["username"]).status_code == 200

    def test_many_closed_accounts_coexist(self, client):
        for _ in range(3):
            user_id, token = token_for(client)
            assert close(client, user_id, token).status_code == 204

    def test_an_admin_closes_any_account_and_then_finds_it_gone(self, client, account):
        _, admin = token_for(client, "admin")
        assert close(client, account["id"], admin).status_code == 204
        assert_problem(client.get(f"/api/v1/users/{account['id']}", headers=auth(admin)), 404)
        assert_problem(client.get(book_of(account["id"]), headers=auth(admin)), 404)
        assert_problem(close(client, account["id"], admin), 404)
        response = client.patch(
            f"/api/v1/users/{account['id']}", json={"phone": None}, headers=auth(admin)
        )
        assert_problem(response, 404)
        assert_problem(add(client, account["id"], admin), 404)

    def test_another_customer_and_the_service_may_not(self, client, account):
        _, other = token_for(client)
        _, service = token_for(client, "service")
        assert_problem(close(client, account["id"], other), 403)
        assert_problem(close(client, account["id"], service), 403)
        assert login(client, account["username"]).status_code == 200

    def test_unknown_ids_are_404_and_no_token_is_401(self, client):
        _, admin = token_for(client, "admin")
        assert_problem(close(client, str(uuid.uuid4()), admin), 404)
        assert_problem(client.delete(f"/api/v1/users/{uuid.uuid4()}"), 401)


class TestTokensOfAClosedAccount:
    """The user service refuses them at once; elsewhere they run out with their 15 minutes."""

    def test_every_call_with_the_token_is_401_at_once(self, client, account):
        token, user_id = account["token"], account["id"]
        assert client.get(f"/api/v1/users/{user_id}", headers=auth(token)).status_code == 200
        assert close(client, user_id, token).status_code == 204
        for response in (
            client.get(f"/api/v1/users/{user_id}", headers=auth(token)),
            client.get(book_of(user_id), headers=auth(token)),
            client.patch(
                f"/api/v1/users/{user_id}", json={"currentPassword": PASSWORD}, headers=auth(token)
            ),
            close(client, user_id, token),
        ):
            assert "closed" in assert_problem(response, 401)["detail"]

    def test_a_closed_admins_token_loses_its_powers_here_at_once(self, client, account):
        admin_id, admin = token_for(client, "admin")
        assert close(client, admin_id, admin).status_code == 204
        response = client.get(f"/api/v1/users/{account['id']}", headers=auth(admin))
        assert_problem(response, 401)

    def test_tokens_live_15_minutes_so_other_services_stop_taking_them_by_then(
        self, client, account
    ):
        claims = jwt.decode(account["token"], options={"verify_signature": False})
        assert claims["exp"] - claims["iat"] == 15 * 60
