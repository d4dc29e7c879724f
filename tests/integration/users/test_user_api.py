"""Every row of the user section of the contract, against a real database."""

from __future__ import annotations

import uuid

import jwt
import pytest

from tests.support.tokens import make_token, other_private_key_pem, signing_key_pem, unsigned_token

PROBLEM = "application/problem+json"


def unique(prefix: str = "u") -> str:
    return f"{prefix}{uuid.uuid4().hex[:12]}"


def register(client, username: str | None = None, email: str | None = None, password="s3cret-pass"):
    username = username or unique()
    email = email or f"{username}@example.com"
    return client.post(
        "/api/v1/users", json={"username": username, "email": email, "password": password}
    )


def login(client, username: str, password: str = "s3cret-pass"):
    return client.post("/api/v1/login", json={"username": username, "password": password})


def token_for(client, role: str = "customer") -> tuple[str, str]:
    """A fresh account of `role` and its access token."""
    username = unique(role[:1])
    if role == "customer":
        user_id = register(client, username).get_json()["id"]
    else:
        user_id = (
            client.application.extensions["user_service"]
            .ensure_account(username, "s3cret-pass", role)
            .id
        )
    return user_id, login(client, username).get_json()["accessToken"]


def auth(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def assert_problem(response, status: int) -> dict:
    assert response.status_code == status, response.get_data(as_text=True)
    assert response.mimetype == PROBLEM
    body = response.get_json()
    assert body["status"] == status
    assert {"type", "title", "detail"} <= body.keys()
    return body


class TestRegister:
    def test_creates_a_customer_and_hides_the_hash(self, client):
        username = unique()
        response = register(client, username)
        assert response.status_code == 201
        body = response.get_json()
        assert set(body) == {"id", "username", "email", "phone", "role", "createdAt", "updatedAt"}
        assert body["role"] == "customer"
        assert body["phone"] is None
        assert str(uuid.UUID(body["id"])) == body["id"]
        assert uuid.UUID(body["id"]).version == 7
        assert body["createdAt"].endswith("Z")
        assert response.headers["Location"] == f"/api/v1/users/{body['id']}"
        assert "password" not in response.get_data(as_text=True).lower()

    def test_role_in_the_body_is_refused_not_honoured(self, client):
        response = client.post(
            "/api/v1/users",
            json={
                "username": unique(),
                "email": f"{unique()}@example.com",
                "password": "s3cret-pass",
                "role": "admin",
            },
        )
        body = assert_problem(response, 422)
        assert body["errors"][0]["field"] == "role"

    def test_taken_username_is_409_whatever_its_case(self, client):
        username = unique("Case")
        assert register(client, username).status_code == 201
        response = register(client, username.lower(), email=f"{unique()}@example.com")
        assert assert_problem(response, 409)["field"] == "username"

    def test_taken_email_is_409(self, client):
        email = f"{unique()}@example.com"
        assert register(client, email=email).status_code == 201
        assert assert_problem(register(client, email=email.upper()), 409)["field"] == "email"

    @pytest.mark.parametrize(
        ("field", "value"),
        [
            ("username", "ab"),
            ("username", "x" * 51),
            ("username", "bad name"),
            ("username", "semi;colon"),
            ("username", 12345),
            ("username", None),
            ("email", "not-an-email"),
            ("email", ["a@b.co"]),
            ("password", "short"),
            ("password", "p" * 129),
            ("password", 123456789),
            ("password", True),
        ],
    )
    def test_invalid_fields_are_422_naming_the_field(self, client, field, value):
        payload = {
            "username": unique(),
            "email": f"{unique()}@example.com",
            "password": "s3cret-pass",
        }
        payload[field] = value
        body = assert_problem(client.post("/api/v1/users", json=payload), 422)
        assert [e["field"] for e in body["errors"]] == [field]

    def test_missing_fields_are_each_named(self, client):
        body = assert_problem(client.post("/api/v1/users", json={}), 422)
        assert {e["field"] for e in body["errors"]} == {"username", "email", "password"}

    @pytest.mark.parametrize("payload", ["[]", '"text"', "42", "null"])
    def test_a_body_that_is_not_an_object_is_422(self, client, payload):
        response = client.post("/api/v1/users", data=payload, content_type="application/json")
        assert_problem(response, 422)

    @pytest.mark.parametrize("payload", ["{", '{"username": }', "NaN", '{"a": Infinity}', "\xff"])
    def test_malformed_json_is_400(self, client, payload):
        response = client.post("/api/v1/users", data=payload, content_type="application/json")
        assert_problem(response, 400)

    @pytest.mark.parametrize(
        "content_type", [None, "text/plain", "application/x-www-form-urlencoded"]
    )
    def test_a_body_that_is_not_json_is_415(self, client, content_type):
        response = client.post("/api/v1/users", data='{"username": "x"}', content_type=content_type)
        assert_problem(response, 415)

    def test_an_oversized_body_is_413_and_creates_nothing(self, client):
        username = unique()
        payload = (
            f'{{"username": "{username}", "email": "{username}@example.com", '
            f'"password": "s3cret-pass", "pad": "{"x" * 70_000}"}}'
        )
        response = client.post("/api/v1/users", data=payload, content_type="application/json")
        assert_problem(response, 413)
        assert login(client, username).status_code == 401

    def test_bad_input_changes_nothing(self, client):
        username = unique()
        client.post(
            "/api/v1/users", json={"username": username, "email": "nope", "password": "s3cret-pass"}
        )
        assert register(client, username).status_code == 201


class TestGetUser:
    def test_the_user_reads_their_own_account(self, client):
        user_id, token = token_for(client)
        response = client.get(f"/api/v1/users/{user_id}", headers=auth(token))
        assert response.status_code == 200
        assert response.get_json()["id"] == user_id

    @pytest.mark.parametrize("role", ["admin", "service"])
    def test_admin_and_service_read_any_account(self, client, role):
        user_id, _ = token_for(client)
        _, token = token_for(client, role)
        response = client.get(f"/api/v1/users/{user_id}", headers=auth(token))
        assert response.status_code == 200
        assert response.get_json()["id"] == user_id

    def test_another_customer_is_403(self, client):
        user_id, _ = token_for(client)
        _, token = token_for(client)
        assert_problem(client.get(f"/api/v1/users/{user_id}", headers=auth(token)), 403)

    def test_unknown_id_is_404(self, client):
        _, token = token_for(client, "admin")
        response = client.get(f"/api/v1/users/{uuid.uuid4()}", headers=auth(token))
        assert_problem(response, 404)

    @pytest.mark.parametrize(
        "bad_id", ["123", "not-a-uuid", "01A21113-12AF-7A1D-9213-90B0E99E75CC"]
    )
    def test_an_id_that_is_not_a_canonical_uuid_is_404(self, client, bad_id):
        _, token = token_for(client, "admin")
        assert_problem(client.get(f"/api/v1/users/{bad_id}", headers=auth(token)), 404)

    def test_no_token_is_401(self, client):
        user_id, _ = token_for(client)
        response = client.get(f"/api/v1/users/{user_id}")
        assert_problem(response, 401)
        assert response.headers["WWW-Authenticate"].startswith("Bearer")


class TestTokenForgery:
    """Every way to forge or misuse a token is a 401, never a 500 or a 200."""

    @pytest.fixture
    def target(self, client):
        user_id, _ = token_for(client)
        return f"/api/v1/users/{user_id}", user_id

    @pytest.fixture
    def kid(self, client):
        return client.get("/.well-known/jwks.json").get_json()["keys"][0]["kid"]

    @pytest.mark.parametrize(
        "header",
        [
            "Bearer",
            "Bearer ",
            "Basic dXNlcjpwYXNz",
            "Bearer not.a.jwt",
            "Bearer a.b.c",
            "Token abc",
        ],
    )
    def test_malformed_authorization_is_401(self, client, target, header):
        assert_problem(client.get(target[0], headers={"Authorization": header}), 401)

    def test_expired_token_is_401(self, client, target, kid):
        token = make_token(
            signing_key_pem(), kid=kid, sub=target[1], role="customer", lifetime_s=-120
        )
        assert (
            "expired" in assert_problem(client.get(target[0], headers=auth(token)), 401)["detail"]
        )

    def test_alg_none_is_401(self, client, target, kid):
        import time

        now = int(time.time())
        claims = {
            "sub": target[1],
            "role": "admin",
            "iss": "shop-user-service",
            "iat": now,
            "exp": now + 300,
        }
        assert_problem(client.get(target[0], headers=auth(unsigned_token(claims, kid))), 401)

    def test_signed_by_another_key_under_our_kid_is_401(self, client, target, kid):
        token = make_token(other_private_key_pem(), kid=kid, sub=target[1], role="admin")
        assert_problem(client.get(target[0], headers=auth(token)), 401)

    def test_unknown_kid_is_401(self, client, target):
        token = make_token(other_private_key_pem(), kid="someone-elses-key", role="admin")
        assert_problem(client.get(target[0], headers=auth(token)), 401)

    def test_hs256_signed_with_the_public_key_is_401(self, client, target, kid):
        public_pem = (
            client.application.extensions["token_signer"]
            .public_key()
            .public_bytes(
                encoding=__import__(
                    "cryptography.hazmat.primitives.serialization", fromlist=["x"]
                ).Encoding.PEM,
                format=__import__(
                    "cryptography.hazmat.primitives.serialization", fromlist=["x"]
                ).PublicFormat.SubjectPublicKeyInfo,
            )
        )
        forged = _hs256(
            public_pem, {"sub": target[1], "role": "admin", "iss": "shop-user-service"}, kid
        )
        assert_problem(client.get(target[0], headers=auth(forged)), 401)

    def test_wrong_issuer_is_401(self, client, target, kid):
        token = make_token(signing_key_pem(), kid=kid, sub=target[1], role="admin", issuer="evil")
        assert_problem(client.get(target[0], headers=auth(token)), 401)

    @pytest.mark.parametrize("role", ["superuser", "", None])
    def test_unknown_role_is_401(self, client, target, kid, role):
        token = make_token(signing_key_pem(), kid=kid, sub=target[1], role=role)
        assert_problem(client.get(target[0], headers=auth(token)), 401)

    def test_token_without_exp_is_401(self, client, target, kid):
        import time

        claims = {
            "sub": target[1],
            "role": "admin",
            "iss": "shop-user-service",
            "iat": int(time.time()),
        }
        token = jwt.encode(claims, signing_key_pem(), algorithm="RS256", headers={"kid": kid})
        assert_problem(client.get(target[0], headers=auth(token)), 401)


def _hs256(secret: bytes, claims: dict, kid: str) -> str:
    """PyJWT refuses to HMAC with a PEM key, so build the token by hand, as an attacker would."""
    import base64
    import hashlib
    import hmac
    import json
    import time

    def b64(raw: bytes) -> str:
        return base64.urlsafe_b64encode(raw).decode().rstrip("=")

    now = int(time.time())
    header = b64(json.dumps({"alg": "HS256", "typ": "JWT", "kid": kid}).encode())
    payload = b64(json.dumps({**claims, "iat": now, "exp": now + 300}).encode())
    signature = hmac.new(secret, f"{header}.{payload}".encode(), hashlib.sha256).digest()
    return f"{header}.{payload}.{b64(signature)}"


class TestLogin:
    def test_username_or_email_gets_a_verifiable_token(self, client):
        username = unique()
        user_id = register(client, username).get_json()["id"]
        jwks = client.get("/.well-known/jwks.json").get_json()
        public_key = jwt.PyJWK(jwks["keys"][0]).key
        for identifier in (username, f"{username}@example.com", username.upper()):
            response = login(client, identifier)
            assert response.status_code == 200
            body = response.get_json()
            assert body["tokenType"] == "Bearer"
            assert body["expiresIn"] == 900
            assert response.headers["Cache-Control"] == "no-store"
            claims = jwt.decode(
                body["accessToken"], public_key, algorithms=["RS256"], issuer="shop-user-service"
            )
            assert claims["sub"] == user_id
            assert claims["role"] == "customer"
            assert {"exp", "iat"} <= claims.keys()
            assert jwt.get_unverified_header(body["accessToken"])["kid"] == jwks["keys"][0]["kid"]

    def test_unknown_user_and_wrong_password_answer_identically(self, client):
        username = unique()
        register(client, username)
        wrong = login(client, username, "wrong-password")
        unknown = login(client, unique(), "wrong-password")
        assert_problem(wrong, 401)
        assert wrong.get_data() == unknown.get_data()
        assert wrong.headers["WWW-Authenticate"] == unknown.headers["WWW-Authenticate"]

    def test_repeated_failures_are_429_with_retry_after(self, client):
        username = unique()
        register(client, username)
        for _ in range(3):
            assert login(client, username, "wrong-password").status_code == 401
        locked = login(client, username)  # even the right password waits
        assert_problem(locked, 429)
        assert 1 <= int(locked.headers["Retry-After"]) <= 60

    def test_unknown_usernames_are_rate_limited_too(self, client):
        username = unique()
        for _ in range(3):
            login(client, username, "guess-guess")
        assert_problem(login(client, username, "guess-guess"), 429)

    def test_the_failure_count_is_shared_by_every_instance(self, client, make_user_app):
        """Two app instances (two workers or replicas) on one database see one count."""
        username = unique()
        register(client, username)
        other = make_user_app().test_client()
        login(client, username, "wrong-1")
        login(other, username, "wrong-2")
        login(client, username, "wrong-3")
        assert_problem(login(other, username), 429)

    def test_success_resets_the_count(self, client):
        username = unique()
        register(client, username)
        for _ in range(2):
            login(client, username, "wrong-password")
        assert login(client, username).status_code == 200
        for _ in range(2):
            login(client, username, "wrong-password")
        assert login(client, username).status_code == 200

    @pytest.mark.parametrize(
        "payload",
        [
            {},
            {"username": "someone"},
            {"password": "x"},
            {"username": 1, "password": "x"},
            {"username": "", "password": "x"},
            {"username": "a", "password": "b", "extra": 1},
        ],
    )
    def test_invalid_body_is_422(self, client, payload):
        assert_problem(client.post("/api/v1/login", json=payload), 422)

    def test_malformed_json_is_400_and_wrong_media_type_is_415(self, client):
        assert_problem(client.post("/api/v1/login", data="{", content_type="application/json"), 400)
        assert_problem(client.post("/api/v1/login", data="username=a"), 415)


class TestJwks:
    def test_publishes_the_public_key_only(self, client):
        response = client.get("/.well-known/jwks.json")
        assert response.status_code == 200
        (key,) = response.get_json()["keys"]
        assert key["kty"] == "RSA" and key["alg"] == "RS256" and key["use"] == "sig"
        assert key["kid"]
        assert not {"d", "p", "q", "dp", "dq", "qi"} & key.keys()


class TestPlatform:
    def test_health_and_readiness(self, client):
        assert client.get("/health").get_json() == {"status": "ok"}
        assert client.get("/health/ready").get_json() == {"status": "ok"}

    def test_readiness_and_writes_are_503_when_the_database_is_down(self, make_user_app):
        down = make_user_app(database_url="mysql+pymysql://root@127.0.0.1:1/nowhere").test_client()
        assert client_ok(down.get("/health"))
        ready = down.get("/health/ready")
        assert_problem(ready, 503)
        assert int(ready.headers["Retry-After"]) >= 1
        response = register(down)
        assert_problem(response, 503)
        assert int(response.headers["Retry-After"]) >= 1

    def test_request_id_is_echoed_or_generated(self, client):
        assert (
            client.get("/health", headers={"X-Request-ID": "abc-123"}).headers["X-Request-ID"]
            == "abc-123"
        )
        generated = client.get("/health").headers["X-Request-ID"]
        assert uuid.UUID(generated)
        hostile = client.get("/health", headers={"X-Request-ID": "x" * 500}).headers["X-Request-ID"]
        assert hostile != "x" * 500

    def test_unknown_route_and_wrong_method_are_problems(self, client):
        assert_problem(client.get("/nowhere"), 404)
        assert_problem(client.delete("/api/v1/users"), 405)

    def test_metrics_count_requests_by_route_and_status(self, client):
        client.get("/health")
        text = client.get("/metrics").get_data(as_text=True)
        assert (
            'http_requests_total{method="GET",route="/health",service="user_service",status="200"}'
            in text
        )
        assert "http_request_duration_seconds_bucket" in text

    def test_serves_its_openapi_document(self, client):
        from pathlib import Path

        served = client.get("/openapi.yaml")
        assert served.status_code == 200
        assert served.get_data(as_text=True) == (Path("user_service") / "openapi.yaml").read_text()


def client_ok(response) -> bool:
    return response.status_code == 200


class TestConfiguredAccounts:
    def test_ensure_account_creates_then_updates(self, user_app, client):
        service = user_app.extensions["user_service"]
        username = unique("admin")
        first = service.ensure_account(username, "first-password", "admin")
        again = service.ensure_account(username, "first-password", "admin")
        assert again.id == first.id
        service.ensure_account(username, "second-password", "admin")
        assert login(client, username, "first-password").status_code == 401
        token = login(client, username, "second-password").get_json()["accessToken"]
        assert jwt.decode(token, options={"verify_signature": False})["role"] == "admin"

    def test_replicas_ensuring_one_account_together_all_succeed(self, user_app):
        """Several replicas run `prestart` at once: each must find or create the account."""
        import threading

        service = user_app.extensions["user_service"]
        username = unique("svc")
        barrier = threading.Barrier(4)
        outcomes: list[object] = []

        def ensure() -> None:
            barrier.wait()
            try:
                outcomes.append(service.ensure_account(username, "replica-pass", "service").id)
            except Exception as exc:  # collected, so the assertion names what went wrong
                outcomes.append(exc)

        threads = [threading.Thread(target=ensure) for _ in range(4)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert len(set(outcomes)) == 1, outcomes
