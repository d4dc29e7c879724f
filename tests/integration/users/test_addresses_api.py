"""The address book: validation, who may do what, and the cap of 20 under concurrency."""

from __future__ import annotations

import json
import uuid

import pytest
import sqlalchemy as sa

from tests.integration.users.test_user_api import assert_problem, auth, token_for
from tests.support.parallel import all_at_once
from user_service.address_repository import addresses

HOME = {
    "label": "Home",
    "recipient": "Ada Lovelace",
    "line1": "12 St James's Square",
    "line2": "Flat 3",
    "city": "London",
    "region": "Greater London",
    "postalCode": "SW1Y 4JH",
    "country": "GB",
    "phone": "+442071838750",
}
MINIMAL = {
    "recipient": "Grace Hopper",
    "line1": "1 Navy Way",
    "city": "Arlington",
    "postalCode": "22202",
    "country": "US",
}


def book_of(user_id: str) -> str:
    return f"/api/v1/users/{user_id}/addresses"


def add(client, user_id: str, token: str, body: dict | None = None):
    return client.post(book_of(user_id), json=body or HOME, headers=auth(token))


@pytest.fixture
def owner(client) -> tuple[str, str]:
    return token_for(client)


class TestAddAndRead:
    def test_adds_reads_and_lists_an_address(self, client, owner):
        user_id, token = owner
        response = add(client, user_id, token)
        assert response.status_code == 201, response.get_data(as_text=True)
        address = response.get_json()
        assert set(address) == {"id", *HOME, "createdAt", "updatedAt"}
        assert {k: address[k] for k in HOME} == HOME
        assert uuid.UUID(address["id"]).version == 7
        assert response.headers["Location"] == f"{book_of(user_id)}/{address['id']}"
        assert client.get(response.headers["Location"], headers=auth(token)).get_json() == address
        listed = client.get(book_of(user_id), headers=auth(token)).get_json()
        assert listed == {"items": [address], "nextCursor": None}

    def test_absent_optional_fields_are_null(self, client, owner):
        user_id, token = owner
        address = add(client, user_id, token, MINIMAL).get_json()
        assert {k: address[k] for k in ("label", "line2", "region", "phone")} == dict.fromkeys(
            ("label", "line2", "region", "phone")
        )

    def test_the_list_pages_in_creation_order(self, client, owner):
        user_id, token = owner
        ids = [add(client, user_id, token).get_json()["id"] for _ in range(3)]
        first = client.get(f"{book_of(user_id)}?limit=2", headers=auth(token)).get_json()
        assert [a["id"] for a in first["items"]] == ids[:2]
        rest = client.get(
            f"{book_of(user_id)}?limit=2&cursor={first['nextCursor']}", headers=auth(token)
        ).get_json()
        assert [a["id"] for a in rest["items"]] == ids[2:] and rest["nextCursor"] is None

    def test_an_unknown_user_has_no_book(self, client):
        _, admin = token_for(client, "admin")
        assert_problem(client.get(book_of(str(uuid.uuid4())), headers=auth(admin)), 404)
        assert_problem(add(client, str(uuid.uuid4()), admin), 404)


class TestValidation:
    @pytest.mark.parametrize(
        ("field", "value"),
        [
            ("country", "XX"),  # user-assigned, never a country
            ("country", "UK"),  # reserved; the United Kingdom is GB
            ("country", "EU"),
            ("country", "gb"),
            ("country", "GBR"),
            ("country", ""),
            ("country", None),
            ("phone", "020 7183 8750"),
            ("phone", "+0442071838750"),
            ("recipient", ""),
            ("recipient", "r" * 101),
            ("recipient", None),
            ("line1", "l" * 201),
            ("line2", "l" * 201),
            ("label", "l" * 51),
            ("city", "c" * 101),
            ("region", "r" * 101),
            ("postalCode", "p" * 21),
            ("postalCode", 22202),
        ],
    )
    def test_an_invalid_field_is_422_naming_it_and_adds_nothing(self, client, owner, field, value):
        user_id, token = owner
        body = assert_problem(add(client, user_id, token, {**HOME, field: value}), 422)
        assert [e["field"] for e in body["errors"]] == [field]
        assert client.get(book_of(user_id), headers=auth(token)).get_json()["items"] == []

    def test_text_that_no_database_can_store_is_422(self, client, owner):
        user_id, token = owner
        # json.dumps escapes the lone surrogate as JSON may; the test client would not send it.
        payload = json.dumps({**HOME, "line1": "\ud800"})
        response = client.post(
            book_of(user_id), data=payload, content_type="application/json", headers=auth(token)
        )
        assert [e["field"] for e in assert_problem(response, 422)["errors"]] == ["line1"]

    @pytest.mark.parametrize("field", ["recipient", "line1", "city", "postalCode", "country"])
    def test_every_required_field_is_named_when_missing(self, client, owner, field):
        user_id, token = owner
        body = {k: v for k, v in MINIMAL.items() if k != field}
        assert [
            e["field"] for e in assert_problem(add(client, user_id, token, body), 422)["errors"]
        ] == [field]

    def test_unknown_fields_are_422(self, client, owner):
        user_id, token = owner
        body = assert_problem(add(client, user_id, token, {**HOME, "postal_code": "x"}), 422)
        assert [e["field"] for e in body["errors"]] == ["postal_code"]

    def test_the_longest_values_fit(self, client, owner):
        user_id, token = owner
        longest = {
            **HOME,
            "label": "é" * 50,
            "recipient": "ü" * 100,
            "line1": "日" * 200,
            "line2": "l" * 200,
            "city": "c" * 100,
            "region": "r" * 100,
            "postalCode": "p" * 20,
            "phone": "+123456789012345",
        }
        response = add(client, user_id, token, longest)
        assert response.status_code == 201, response.get_data(as_text=True)
        assert {k: response.get_json()[k] for k in longest} == longest


class TestEditAndDelete:
    def test_patch_changes_the_fields_sent_and_null_clears_optional_ones(self, client, owner):
        user_id, token = owner
        address = add(client, user_id, token).get_json()
        url = f"{book_of(user_id)}/{address['id']}"
        response = client.patch(
            url, json={"city": "Oxford", "line2": None, "country": "IE"}, headers=auth(token)
        )
        assert response.status_code == 200
        edited = response.get_json()
        assert edited["city"] == "Oxford" and edited["line2"] is None and edited["country"] == "IE"
        assert (
            edited["recipient"] == HOME["recipient"] and edited["createdAt"] == address["createdAt"]
        )
        assert edited["updatedAt"] != address["updatedAt"]
        assert client.get(url, headers=auth(token)).get_json() == edited

    @pytest.mark.parametrize(
        "body",
        [{"recipient": None}, {"country": "XX"}, {"city": ""}, {"id": str(uuid.uuid4())}],
    )
    def test_patch_refuses_what_an_address_cannot_be(self, client, owner, body):
        user_id, token = owner
        address = add(client, user_id, token).get_json()
        url = f"{book_of(user_id)}/{address['id']}"
        assert_problem(client.patch(url, json=body, headers=auth(token)), 422)
        assert client.get(url, headers=auth(token)).get_json() == address

    def test_delete_removes_it(self, client, owner):
        user_id, token = owner
        url = f"{book_of(user_id)}/{add(client, user_id, token).get_json()['id']}"
        assert client.delete(url, headers=auth(token)).status_code == 204
        assert_problem(client.get(url, headers=auth(token)), 404)
        assert_problem(client.delete(url, headers=auth(token)), 404)
        assert_problem(client.patch(url, json={"city": "X"}, headers=auth(token)), 404)


class TestWhoMay:
    def test_another_customers_address_is_403_and_a_wrong_owner_is_404(self, client, owner):
        user_id, token = owner
        address_id = add(client, user_id, token).get_json()["id"]
        other_id, other = token_for(client)
        url = f"{book_of(user_id)}/{address_id}"
        assert_problem(client.get(url, headers=auth(other)), 403)
        assert_problem(client.delete(url, headers=auth(other)), 403)
        assert_problem(add(client, user_id, other), 403)
        assert_problem(client.get(book_of(user_id), headers=auth(other)), 403)
        # Under the other user's own id, the address is simply not there.
        assert_problem(client.get(f"{book_of(other_id)}/{address_id}", headers=auth(other)), 404)

    def test_the_service_reads_but_does_not_write(self, client, owner):
        user_id, token = owner
        address = add(client, user_id, token).get_json()
        _, service = token_for(client, "service")
        url = f"{book_of(user_id)}/{address['id']}"
        assert client.get(url, headers=auth(service)).get_json() == address
        assert client.get(book_of(user_id), headers=auth(service)).get_json()["items"] == [address]
        assert_problem(add(client, user_id, service), 403)
        assert_problem(client.patch(url, json={"city": "X"}, headers=auth(service)), 403)
        assert_problem(client.delete(url, headers=auth(service)), 403)

    def test_the_service_finds_no_address_under_another_user(self, client, owner):
        """The order service's one call proves the address is that user's."""
        user_id, token = owner
        address_id = add(client, user_id, token).get_json()["id"]
        other_id, _ = token_for(client)
        _, service = token_for(client, "service")
        response = client.get(f"{book_of(other_id)}/{address_id}", headers=auth(service))
        assert_problem(response, 404)
        response = client.get(f"{book_of(str(uuid.uuid4()))}/{address_id}", headers=auth(service))
        assert_problem(response, 404)

    def test_an_admin_manages_anyones_book(self, client, owner):
        user_id, token = owner
        _, admin = token_for(client, "admin")
        created = add(client, user_id, admin)
        assert created.status_code == 201
        url = created.headers["Location"]
        assert client.patch(url, json={"label": "Work"}, headers=auth(admin)).status_code == 200
        assert client.get(url, headers=auth(token)).get_json()["label"] == "Work"
        assert client.delete(url, headers=auth(admin)).status_code == 204

    def test_no_token_is_401(self, client, owner):
        user_id, _ = owner
        assert_problem(client.get(book_of(user_id)), 401)
        assert_problem(client.post(book_of(user_id), json=HOME), 401)


class TestCap:
    def test_the_21st_address_is_409(self, client, owner):
        user_id, token = owner
        for _ in range(20):
            assert add(client, user_id, token, MINIMAL).status_code == 201
        body = assert_problem(add(client, user_id, token, MINIMAL), 409)
        assert "20" in body["detail"]
        first = client.get(book_of(user_id), headers=auth(token)).get_json()["items"][0]
        client.delete(f"{book_of(user_id)}/{first['id']}", headers=auth(token))
        assert add(client, user_id, token, MINIMAL).status_code == 201

    def test_parallel_additions_never_pass_20(self, user_app, user_db_url, owner):
        user_id, token = owner
        attempts = 28
        statuses = all_at_once(
            attempts, lambda _: add(user_app.test_client(), user_id, token, MINIMAL).status_code
        )
        assert sorted(statuses) == [201] * 20 + [409] * (attempts - 20)
        engine = sa.create_engine(user_db_url)
        with engine.connect() as connection:
            stored = connection.execute(
                sa.select(sa.func.count()).where(addresses.c.user_id == user_id)
            ).scalar_one()
        engine.dispose()
        assert stored == 20
