"""The phone on sign-up, and PATCH /users/{id}: who may change what, against a real database."""

from __future__ import annotations

import uuid

import pytest
from flask.testing import FlaskClient
from werkzeug.test import TestResponse

from common.auth import Principal
from common.errors import Unauthorized
from tests.integration.users.conftest import ONE_TURN_AND_A_PAUSE_AFTER_ONE_FAILURE, user_settings
from tests.integration.users.test_user_api import (
    assert_problem,
    auth,
    login,
    register,
    token_for,
    unique,
)
from user_service.passwords import Passwords
from user_service.profile import AccountEdit, ProfileEditor
from user_service.repository import users

PASSWORD = "s3cret-pass"


def sign_up(client: FlaskClient, **fields: object) -> TestResponse:
    username = unique()
    body = {"username": username, "email": f"{username}@example.com", "password": PASSWORD}
    return client.post("/api/v1/users", json={**body, **fields})


def patch(client, user_id: str, token: str, body: dict):
    return client.patch(f"/api/v1/users/{user_id}", json=body, headers=auth(token))


class TestPhoneOnSignUp:
    def test_an_e164_phone_is_kept_and_shown(self, client):
        response = sign_up(client, phone="+442071838750")
        assert response.status_code == 201, response.get_data(as_text=True)
        assert response.get_json()["phone"] == "+442071838750"

    def test_null_is_no_phone(self, client):
        assert sign_up(client, phone=None).get_json()["phone"] is None

    @pytest.mark.parametrize(
        "phone",
        [
            "442071838750",  # no +
            "+44 20 7183 8750",  # spaces
            "+44-20-71838750",
            "+1234567",  # 7 digits
            "+1234567890123456",  # 16 digits
            "+0442071838750",  # no country code begins with 0
            "+44207183875O",  # a letter O
            "+٤٤٢٠٧١٨٣٨٧٥٠",  # Arabic-Indic digits are digits to Unicode, not to E.164
            "+442071838750\n",
            442071838750,
        ],
    )
    def test_anything_but_strict_e164_is_422(self, client, phone):
        body = assert_problem(sign_up(client, phone=phone), 422)
        assert [e["field"] for e in body["errors"]] == ["phone"]


class TestPatchOwnAccount:
    @pytest.fixture
    def account(self, client):
        username = unique()
        user_id = register(client, username).get_json()["id"]
        return user_id, username, login(client, username).get_json()["accessToken"]

    def test_changes_email_phone_and_password_with_the_current_password(self, client, account):
        user_id, username, token = account
        new_email = f"{unique()}@example.org"
        response = patch(
            client,
            user_id,
            token,
            {
                "email": new_email,
                "phone": "+14155550123",
                "password": "brand-new-pass",
                "currentPassword": PASSWORD,
            },
        )
        assert response.status_code == 200, response.get_data(as_text=True)
        body = response.get_json()
        assert body["email"] == new_email and body["phone"] == "+14155550123"
        assert body["role"] == "customer" and body["username"] == username
        assert body["updatedAt"] != body["createdAt"]
        assert login(client, username, PASSWORD).status_code == 401
        assert login(client, new_email, "brand-new-pass").status_code == 200
        fetched = client.get(f"/api/v1/users/{user_id}", headers=auth(token)).get_json()
        assert fetched == body

    def test_the_current_password_is_required_from_the_user(self, client, account):
        user_id, _, token = account
        body = assert_problem(patch(client, user_id, token, {"phone": "+14155550123"}), 422)
        assert [e["field"] for e in body["errors"]] == ["currentPassword"]
        assert (
            client.get(f"/api/v1/users/{user_id}", headers=auth(token)).get_json()["phone"] is None
        )

    def test_a_wrong_current_password_is_401_and_changes_nothing(self, client, account):
        user_id, username, token = account
        response = patch(
            client, user_id, token, {"password": "taken-over!", "currentPassword": "not-it-at-all"}
        )
        assert_problem(response, 401)
        assert login(client, username, PASSWORD).status_code == 200

    def test_wrong_current_passwords_count_against_the_account_like_failed_logins(
        self, client, account
    ):
        """A stolen token cannot be used to guess the password: login_max_failures is 3 here."""
        user_id, username, token = account
        for number in range(3):
            wrong = {"phone": "+14155550123", "currentPassword": f"guess-{number}"}
            assert_problem(patch(client, user_id, token, wrong), 401)
        right = {"phone": "+14155550123", "currentPassword": PASSWORD}
        assert_problem(patch(client, user_id, token, right), 429)
        assert_problem(login(client, username, PASSWORD), 429)

    def test_phone_null_clears_it_and_absent_fields_stay(self, client, account):
        user_id, _, token = account
        patch(client, user_id, token, {"phone": "+14155550123", "currentPassword": PASSWORD})
        before = client.get(f"/api/v1/users/{user_id}", headers=auth(token)).get_json()
        response = patch(client, user_id, token, {"phone": None, "currentPassword": PASSWORD})
        assert response.status_code == 200
        after = response.get_json()
        assert after["phone"] is None
        assert after["email"] == before["email"]

    def test_an_email_taken_by_another_account_is_409_whatever_its_case(self, client, account):
        user_id, _, token = account
        other_email = f"{unique()}@example.com"
        register(client, email=other_email)
        response = patch(
            client, user_id, token, {"email": other_email.upper(), "currentPassword": PASSWORD}
        )
        assert assert_problem(response, 409)["field"] == "email"

    def test_keeping_ones_own_email_in_another_case_is_fine(self, client, account):
        user_id, username, token = account
        email = f"{username}@example.com".upper()
        response = patch(client, user_id, token, {"email": email, "currentPassword": PASSWORD})
        assert response.status_code == 200
        assert response.get_json()["email"] == email

    def test_the_email_takes_the_sign_up_rules(self, client, account):
        user_id, _, token = account
        response = patch(client, user_id, token, {"email": "nope", "currentPassword": PASSWORD})
        assert [e["field"] for e in assert_problem(response, 422)["errors"]] == ["email"]

    @pytest.mark.parametrize(
        "email",
        [
            "someone@example.com",
            "someone@accounts.shop.invalid",
            "no-at-sign.example.com",
            "someone@localhost",
            f"{'x' * 250}@example.com",
        ],
    )
    def test_an_email_is_accepted_exactly_when_sign_up_accepts_it(self, client, account, email):
        user_id, _, token = account
        email = email.replace("someone", unique())
        changed = patch(client, user_id, token, {"email": email, "currentPassword": PASSWORD})
        # Each is new, so the sign-up answers 201 or 422 only on the email's merit.
        signed_up = register(client, unique(), email=email.replace("@", "2@", 1))
        assert (changed.status_code, signed_up.status_code) in {(200, 201), (422, 422)}

    @pytest.mark.parametrize(
        ("body", "field"),
        [
            ({"role": "admin"}, "role"),
            ({"username": "renamed"}, "username"),
            ({"current_password": PASSWORD}, "current_password"),
            ({"email": None}, "email"),
            ({"password": None}, "password"),
            ({"password": "short"}, "password"),
            ({"password": "p" * 129}, "password"),
            ({"phone": "+1 415 555 0123"}, "phone"),
        ],
    )
    def test_invalid_or_unknown_fields_are_422_naming_them(self, client, account, body, field):
        user_id, _, token = account
        response = patch(client, user_id, token, {"currentPassword": PASSWORD, **body})
        assert field in [e["field"] for e in assert_problem(response, 422)["errors"]]

    @pytest.mark.parametrize("current", ["", "x" * 129, None, 12345678])
    def test_the_current_password_is_bounded_before_it_is_hashed(self, client, account, current):
        user_id, _, token = account
        response = patch(
            client, user_id, token, {"phone": "+14155550123", "currentPassword": current}
        )
        assert [e["field"] for e in assert_problem(response, 422)["errors"]] == ["currentPassword"]

    def test_only_the_body_shape_is_accepted(self, client, account):
        user_id, _, token = account
        response = client.patch(f"/api/v1/users/{user_id}", data="phone=1", headers=auth(token))
        assert_problem(response, 415)


class TestPatchWhoMay:
    def test_an_admin_changes_anyone_without_a_password_and_never_the_role(self, client):
        username = unique()
        user_id = register(client, username).get_json()["id"]
        _, admin_token = token_for(client, "admin")
        response = patch(client, user_id, admin_token, {"password": "reset-by-admin"})
        assert response.status_code == 200
        assert response.get_json()["role"] == "customer"
        assert login(client, username, "reset-by-admin").status_code == 200

    def test_an_admin_that_sends_a_wrong_current_password_is_refused(self, client):
        user_id = register(client).get_json()["id"]
        _, admin_token = token_for(client, "admin")
        body = {"phone": "+14155550123", "currentPassword": "not-the-password"}
        assert_problem(patch(client, user_id, admin_token, body), 401)

    def test_another_customer_is_403(self, client):
        user_id, _ = token_for(client)
        _, other = token_for(client)
        assert_problem(patch(client, user_id, other, {"currentPassword": PASSWORD}), 403)

    def test_the_service_role_is_403(self, client):
        user_id, _ = token_for(client)
        _, service = token_for(client, "service")
        assert_problem(patch(client, user_id, service, {"phone": "+14155550123"}), 403)

    def test_no_token_is_401_and_an_unknown_user_is_404(self, client):
        _, admin_token = token_for(client, "admin")
        assert_problem(client.patch(f"/api/v1/users/{uuid.uuid4()}", json={}), 401)
        assert_problem(patch(client, str(uuid.uuid4()), admin_token, {"phone": None}), 404)
        assert_problem(patch(client, "not-a-uuid", admin_token, {"phone": None}), 404)


class TestPasswordChangedMeanwhile:
    def test_a_password_changed_after_verification_refuses_the_edit(
        self, client, user_app, user_db_url
    ):
        """argon2 runs outside any transaction: the edit applies only while the password is
        still the one that was verified."""
        username = unique()
        user_id = register(client, username).get_json()["id"]
        db = user_app.extensions["database"]
        settings = user_settings(user_db_url)

        class PasswordChangedAfterVerifying(Passwords):
            def verify(self, password_hash: str, password: str, *, reserved: bool = False) -> bool:
                verified = super().verify(password_hash, password, reserved=reserved)
                # Another request changes the password between the check and the update.
                with db.transaction() as connection:
                    connection.execute(
                        users.update()
                        .where(users.c.id == user_id)
                        .values(password_hash=self.hash("changed-elsewhere"))
                    )
                return verified

        editor = ProfileEditor(db, settings, PasswordChangedAfterVerifying(settings))
        edit = AccountEdit(phone="+14155550123", current_password=PASSWORD)
        with pytest.raises(Unauthorized):
            editor.update_user(user_id, Principal(user_id, "customer"), edit)
        token = login(client, username, "changed-elsewhere").get_json()["accessToken"]
        assert (
            client.get(f"/api/v1/users/{user_id}", headers=auth(token)).get_json()["phone"] is None
        )


def test_a_current_password_no_hashing_turn_was_free_for_does_not_count(own_user_app):
    """Nothing was checked, so the attempt leaves no count and no pause (here the first
    failure would pause the account for a minute)."""
    app = own_user_app(**ONE_TURN_AND_A_PAUSE_AFTER_ONE_FAILURE)
    client = app.test_client()
    username = unique()
    user_id = register(client, username).get_json()["id"]
    token = login(client, username).get_json()["accessToken"]
    wrong = {"phone": "+14155550123", "currentPassword": "not-it-at-all"}
    with app.extensions["passwords"].hashing_slot():
        assert_problem(patch(client, user_id, token, wrong), 503)
    assert_problem(patch(client, user_id, token, wrong), 401)
    assert_problem(patch(client, user_id, token, wrong), 429)
