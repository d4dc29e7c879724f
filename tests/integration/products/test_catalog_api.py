"""The catalog rows of the product section of the contract, against a real database."""

from __future__ import annotations

import uuid

import pytest

from common.pagination import encode_cursor
from tests.integration.products.conftest import (
    ADMIN,
    CUSTOMER,
    SERVICE,
    UNKNOWN_ID,
    assert_problem,
)
from tests.support.tokens import make_token, other_private_key_pem, unsigned_token

PRODUCT_FIELDS = {
    "id",
    "name",
    "description",
    "price",
    "stock",
    "archivedAt",
    "createdAt",
    "updatedAt",
}


def valid_payload(**overrides: object) -> dict[str, object]:
    return {"name": "Lamp", "description": "A desk lamp", "price": "19.99", "stock": 5, **overrides}


class TestCreate:
    def test_admin_creates_a_product(self, client):
        response = client.post("/api/v1/products", json=valid_payload(), headers=ADMIN)
        assert response.status_code == 201
        body = response.get_json()
        assert set(body) == PRODUCT_FIELDS
        assert uuid.UUID(body["id"]).version == 7
        assert body["price"] == "19.99" and body["stock"] == 5 and body["archivedAt"] is None
        assert body["createdAt"].endswith("Z")
        assert response.headers["Location"] == f"/api/v1/products/{body['id']}"
        assert response.headers["ETag"].startswith('"')

    @pytest.mark.parametrize(("price", "stored"), [("0", "0.00"), (19, "19.00"), (19.5, "19.50")])
    def test_price_is_a_string_or_a_number_and_comes_back_with_two_places(
        self, client, price, stored
    ):
        response = client.post("/api/v1/products", json=valid_payload(price=price), headers=ADMIN)
        assert response.status_code == 201
        assert response.get_json()["price"] == stored

    def test_description_is_optional(self, client):
        payload = valid_payload()
        del payload["description"]
        response = client.post("/api/v1/products", json=payload, headers=ADMIN)
        assert response.status_code == 201
        assert response.get_json()["description"] == ""

    @pytest.mark.parametrize(
        ("field", "value"),
        [
            ("name", ""),
            ("name", "n" * 201),
            ("name", 42),
            ("name", None),
            ("description", "d" * 5001),
            ("description", ["x"]),
            ("price", "-1"),
            ("price", -1),
            ("price", "1.999"),
            ("price", 1.999),
            ("price", "NaN"),
            ("price", "abc"),
            ("price", " 5"),
            ("price", "1e2"),
            ("price", True),
            ("price", "99999999999"),
            ("stock", -1),
            ("stock", "5"),
            ("stock", 1.5),
            ("stock", True),
            ("stock", 1_000_000_001),
        ],
    )
    def test_invalid_fields_are_422_naming_the_field(self, client, field, value):
        payload = valid_payload(**{field: value})
        body = assert_problem(client.post("/api/v1/products", json=payload, headers=ADMIN), 422)
        assert [e["field"] for e in body["errors"]] == [field]

    def test_missing_fields_are_each_named(self, client):
        body = assert_problem(client.post("/api/v1/products", json={}, headers=ADMIN), 422)
        assert {e["field"] for e in body["errors"]} == {"name", "price", "stock"}

    def test_unknown_fields_are_refused(self, client):
        payload = valid_payload(id=str(uuid.uuid4()))
        body = assert_problem(client.post("/api/v1/products", json=payload, headers=ADMIN), 422)
        assert body["errors"][0]["field"] == "id"

    def test_a_lone_surrogate_is_422_not_500(self, client):
        data = '{"name": "bad \\ud800", "price": "1.00", "stock": 1}'
        response = client.post(
            "/api/v1/products", data=data, content_type="application/json", headers=ADMIN
        )
        assert_problem(response, 422)

    @pytest.mark.parametrize("payload", ["{", '{"name": }', "NaN", '{"price": Infinity}', "\xff"])
    def test_malformed_json_is_400(self, client, payload):
        response = client.post(
            "/api/v1/products", data=payload, content_type="application/json", headers=ADMIN
        )
        assert_problem(response, 400)

    @pytest.mark.parametrize("payload", ["[]", '"text"', "42", "null"])
    def test_a_body_that_is_not_an_object_is_422(self, client, payload):
        response = client.post(
            "/api/v1/products", data=payload, content_type="application/json", headers=ADMIN
        )
        assert_problem(response, 422)

    @pytest.mark.parametrize("content_type", [None, "text/plain", "application/xml"])
    def test_a_body_that_is_not_json_is_415(self, client, content_type):
        response = client.post(
            "/api/v1/products", data='{"name": "x"}', content_type=content_type, headers=ADMIN
        )
        assert_problem(response, 415)

    def test_an_oversized_body_is_413_and_creates_nothing(self, client):
        name = f"huge-{uuid.uuid4().hex}"
        payload = (
            f'{{"name": "{name}", "price": "1.00", "stock": 1, "description": "{"x" * 70_000}"}}'
        )
        response = client.post(
            "/api/v1/products", data=payload, content_type="application/json", headers=ADMIN
        )
        assert_problem(response, 413)
        assert client.get(f"/api/v1/products/search?q={name}").get_json()["items"] == []

    def test_no_token_is_401(self, client):
        response = client.post("/api/v1/products", json=valid_payload())
        assert_problem(response, 401)
        assert response.headers["WWW-Authenticate"].startswith("Bearer")

    @pytest.mark.parametrize("headers", [CUSTOMER, SERVICE])
    def test_other_roles_are_403(self, client, headers):
        assert_problem(client.post("/api/v1/products", json=valid_payload(), headers=headers), 403)

    @pytest.mark.parametrize(
        "token",
        [
            "not.a.jwt",
            make_token(other_private_key_pem(), kid="test-signing-key", role="admin"),
            make_token(other_private_key_pem(), kid="someone-elses", role="admin"),
            unsigned_token({"sub": "x", "role": "admin", "iss": "shop-user-service"}, "k"),
        ],
    )
    def test_bad_tokens_are_401(self, client, token):
        response = client.post(
            "/api/v1/products", json=valid_payload(), headers={"Authorization": f"Bearer {token}"}
        )
        assert_problem(response, 401)

    def test_an_expired_token_is_401(self, client):
        from tests.support.tokens import signing_key_pem

        token = make_token(signing_key_pem(), kid="test-signing-key", lifetime_s=-120)
        response = client.post(
            "/api/v1/products", json=valid_payload(), headers={"Authorization": f"Bearer {token}"}
        )
        assert "expired" in assert_problem(response, 401)["detail"]


class TestGet:
    def test_anyone_reads_a_product_with_its_etag(self, client, create_product):
        product = create_product()
        response = client.get(f"/api/v1/products/{product['id']}")
        assert response.status_code == 200
        assert response.get_json() == product
        assert (
            response.headers["ETag"]
            == client.get(f"/api/v1/products/{product['id']}").headers["ETag"]
        )

    @pytest.mark.parametrize(
        "bad_id", [UNKNOWN_ID, "123", "not-a-uuid", "01A21113-12AF-7A1D-9213-90B0E99E75CC"]
    )
    def test_unknown_or_non_uuid_id_is_404(self, client, bad_id):
        assert_problem(client.get(f"/api/v1/products/{bad_id}"), 404)

    def test_the_etag_changes_when_the_stock_moves(self, client, create_product):
        product = create_product(stock=5)
        before = client.get(f"/api/v1/products/{product['id']}").headers["ETag"]
        client.post(
            f"/api/v1/products/{product['id']}/reserve",
            json={"reservationId": uuid.uuid4().hex, "quantity": 1},
            headers=SERVICE,
        )
        assert client.get(f"/api/v1/products/{product['id']}").headers["ETag"] != before


class TestList:
    def test_keyset_pages_cover_everything_once_in_creation_order(self, client, create_product):
        created = [create_product(name=f"page-{i}")["id"] for i in range(5)]
        seen: list[str] = []
        cursor = None
        while True:
            query = "limit=2" + (f"&cursor={cursor}" if cursor else "")
            body = client.get(f"/api/v1/products?{query}").get_json()
            assert len(body["items"]) <= 2
            seen += [item["id"] for item in body["items"]]
            cursor = body["nextCursor"]
            if cursor is None:
                break
        assert seen == sorted(seen)
        assert [i for i in seen if i in created] == created

    def test_pages_are_stable_under_inserts(self, client, create_product):
        first = create_product()["id"]
        create_product()
        page = client.get(f"/api/v1/products?limit=1&cursor={encode_cursor(first)}").get_json()
        following = page["items"][0]["id"]
        create_product()  # newer ids sort after, so the page after `first` does not move
        again = client.get(f"/api/v1/products?limit=1&cursor={encode_cursor(first)}").get_json()
        assert again["items"][0]["id"] == following

    def test_default_limit_is_20(self, client, create_product):
        for _ in range(21):
            create_product()
        body = client.get("/api/v1/products").get_json()
        assert len(body["items"]) == 20
        assert body["nextCursor"] is not None

    @pytest.mark.parametrize(
        "query", ["limit=0", "limit=101", "limit=abc", "cursor=!!!", "cursor=abc", "colour=red"]
    )
    def test_bad_query_parameters_are_422(self, client, query):
        assert_problem(client.get(f"/api/v1/products?{query}"), 422)

    def test_ids_fetches_many_in_one_call(self, client, create_product):
        a, b, c = (create_product()["id"] for _ in range(3))
        unknown = str(uuid.uuid4())
        body = client.get(f"/api/v1/products?ids={c},{a},{unknown},{a}").get_json()
        assert [item["id"] for item in body["items"]] == sorted([a, c])
        assert body["nextCursor"] is None
        assert b not in {item["id"] for item in body["items"]}

    def test_ids_leave_out_archived_products(self, client, create_product):
        product = create_product()["id"]
        client.delete(f"/api/v1/products/{product}", headers=ADMIN)
        assert client.get(f"/api/v1/products?ids={product}").get_json()["items"] == []

    @pytest.mark.parametrize(
        "ids",
        [
            "",
            "nope",
            "1,2,3",
            f"{UNKNOWN_ID},",
            ",".join(f"{UNKNOWN_ID[:-3]}{i:03d}" for i in range(101)),
        ],
    )
    def test_bad_ids_are_422(self, client, ids):
        body = assert_problem(client.get(f"/api/v1/products?ids={ids}"), 422)
        assert body["errors"][0]["field"] == "ids"


class TestUpdate:
    def test_put_replaces_and_returns_a_new_etag(self, client, create_product):
        product = create_product()
        etag = client.get(f"/api/v1/products/{product['id']}").headers["ETag"]
        response = client.put(
            f"/api/v1/products/{product['id']}",
            json={"name": "Renamed", "price": "1.50", "stock": 3},
            headers={**ADMIN, "If-Match": etag},
        )
        assert response.status_code == 200
        body = response.get_json()
        assert (body["name"], body["description"], body["price"], body["stock"]) == (
            "Renamed",
            "",
            "1.50",
            3,
        )
        assert body["createdAt"] == product["createdAt"]
        assert body["updatedAt"] >= product["updatedAt"]
        assert response.headers["ETag"] != etag
        assert client.get(f"/api/v1/products/{product['id']}").get_json() == body

    def test_patch_changes_only_what_it_names(self, client, create_product):
        product = create_product(name="Keep", stock=4)
        response = client.patch(
            f"/api/v1/products/{product['id']}", json={"price": 2}, headers=ADMIN
        )
        assert response.status_code == 200
        body = response.get_json()
        assert (body["name"], body["price"], body["stock"]) == ("Keep", "2.00", 4)

    @pytest.mark.parametrize("method", ["put", "patch"])
    def test_a_stale_etag_is_412_and_changes_nothing(self, client, create_product, method):
        product = create_product()
        stale = client.get(f"/api/v1/products/{product['id']}").headers["ETag"]
        client.patch(f"/api/v1/products/{product['id']}", json={"stock": 99}, headers=ADMIN)
        response = getattr(client, method)(
            f"/api/v1/products/{product['id']}",
            json={"name": "Lost update", "price": "1.00", "stock": 1},
            headers={**ADMIN, "If-Match": stale},
        )
        assert_problem(response, 412)
        assert response.headers["ETag"] != stale
        assert client.get(f"/api/v1/products/{product['id']}").get_json()["stock"] == 99

    @pytest.mark.parametrize("if_match", ["*", 'W/"x", *', None])
    def test_star_or_no_if_match_is_unconditional(self, client, create_product, if_match):
        product = create_product()
        headers = {**ADMIN, **({"If-Match": if_match} if if_match else {})}
        response = client.patch(
            f"/api/v1/products/{product['id']}", json={"stock": 1}, headers=headers
        )
        assert response.status_code == 200

    def test_a_weak_etag_never_matches(self, client, create_product):
        product = create_product()
        etag = client.get(f"/api/v1/products/{product['id']}").headers["ETag"]
        response = client.patch(
            f"/api/v1/products/{product['id']}",
            json={"stock": 1},
            headers={**ADMIN, "If-Match": f"W/{etag}"},
        )
        assert_problem(response, 412)

    def test_unknown_product_is_404(self, client):
        response = client.patch(
            f"/api/v1/products/{uuid.uuid4()}", json={"stock": 1}, headers=ADMIN
        )
        assert_problem(response, 404)

    def test_an_archived_product_cannot_be_changed(self, client, create_product):
        product = create_product()
        client.delete(f"/api/v1/products/{product['id']}", headers=ADMIN)
        response = client.patch(
            f"/api/v1/products/{product['id']}", json={"stock": 1}, headers=ADMIN
        )
        assert_problem(response, 409)

    @pytest.mark.parametrize("payload", [{"stock": -1}, {"price": "x"}, {"name": None}, {"x": 1}])
    def test_invalid_patch_is_422(self, client, create_product, payload):
        product = create_product()
        response = client.patch(f"/api/v1/products/{product['id']}", json=payload, headers=ADMIN)
        assert_problem(response, 422)

    def test_put_needs_every_field(self, client, create_product):
        product = create_product()
        response = client.put(f"/api/v1/products/{product['id']}", json={"stock": 1}, headers=ADMIN)
        assert {e["field"] for e in assert_problem(response, 422)["errors"]} == {"name", "price"}

    @pytest.mark.parametrize("headers", [{}, CUSTOMER, SERVICE])
    def test_only_admins_update(self, client, create_product, headers):
        product = create_product()
        response = client.patch(
            f"/api/v1/products/{product['id']}", json={"stock": 1}, headers=headers
        )
        assert_problem(response, 401 if not headers else 403)

    def test_malformed_json_is_400(self, client, create_product):
        product = create_product()
        response = client.put(
            f"/api/v1/products/{product['id']}",
            data="{",
            content_type="application/json",
            headers=ADMIN,
        )
        assert_problem(response, 400)


class TestArchive:
    def test_delete_archives_and_keeps_the_product_readable(self, client, create_product):
        product = create_product(name=f"archived-{uuid.uuid4().hex[:8]}")
        assert client.delete(f"/api/v1/products/{product['id']}", headers=ADMIN).status_code == 204
        archived = client.get(f"/api/v1/products/{product['id']}")
        assert archived.status_code == 200
        assert archived.get_json()["archivedAt"] is not None
        listed = client.get("/api/v1/products?limit=100").get_json()["items"]
        assert product["id"] not in {item["id"] for item in listed}
        found = client.get(f"/api/v1/products/search?q={product['name']}").get_json()["items"]
        assert found == []

    def test_delete_is_idempotent(self, client, create_product):
        product = create_product()
        assert client.delete(f"/api/v1/products/{product['id']}", headers=ADMIN).status_code == 204
        assert client.delete(f"/api/v1/products/{product['id']}", headers=ADMIN).status_code == 204

    def test_delete_honours_if_match(self, client, create_product):
        product = create_product()
        response = client.delete(
            f"/api/v1/products/{product['id']}", headers={**ADMIN, "If-Match": '"stale"'}
        )
        assert_problem(response, 412)
        assert client.get(f"/api/v1/products/{product['id']}").get_json()["archivedAt"] is None

    @pytest.mark.parametrize("product_id", [UNKNOWN_ID, "nope"])
    def test_unknown_product_is_404(self, client, product_id):
        assert_problem(client.delete(f"/api/v1/products/{product_id}", headers=ADMIN), 404)

    @pytest.mark.parametrize("headers", [{}, CUSTOMER, SERVICE])
    def test_only_admins_archive(self, client, create_product, headers):
        product = create_product()
        response = client.delete(f"/api/v1/products/{product['id']}", headers=headers)
        assert_problem(response, 401 if not headers else 403)


class TestPlatform:
    def test_health_readiness_metrics_and_spec(self, client):
        from pathlib import Path

        assert client.get("/health").get_json() == {"status": "ok"}
        assert client.get("/health/ready").get_json() == {"status": "ok"}
        client.get("/api/v1/products")
        text = client.get("/metrics").get_data(as_text=True)
        assert 'route="/api/v1/products",service="product_service",status="200"' in text
        served = client.get("/openapi.yaml").get_data(as_text=True)
        assert served == (Path("product_service") / "openapi.yaml").read_text()

    def test_a_database_outage_is_503_with_retry_after(self, make_product_app):
        down = make_product_app(database_url="mysql+pymysql://root@127.0.0.1:1/nowhere")
        client = down.test_client()
        assert_problem(client.get("/health/ready"), 503)
        response = client.get("/api/v1/products")
        assert_problem(response, 503)
        assert int(response.headers["Retry-After"]) >= 1
        response = client.post("/api/v1/products", json=valid_payload(), headers=ADMIN)
        assert_problem(response, 503)

    def test_unknown_route_and_wrong_method_are_problems(self, client):
        assert_problem(client.get("/api/v1/nowhere"), 404)
        assert_problem(client.delete("/api/v1/products"), 405)
