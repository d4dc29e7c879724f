"""A closed account's tokens, across real processes: the user service refuses them at once; the
product and order services, which verify tokens with the public key alone, accept them until
they expire (15 minutes), and not a moment longer."""

from __future__ import annotations

import uuid

import jwt
import requests

from tests.support.processes import run_cli
from tests.support.tokens import make_token, signing_key_pem

PASSWORD = "closing-admin-password"


def _admin_token(user_service, user_service_env) -> tuple[str, str]:
    """A fresh admin of its own (closing the session's admin would end the session)."""
    username = f"closing-{uuid.uuid4().hex[:10]}"
    run_cli(
        "user_service",
        "create-user",
        "--username",
        username,
        "--password",
        PASSWORD,
        "--role",
        "admin",
        env=user_service_env,
    )
    response = requests.post(
        f"{user_service.url}/api/v1/login",
        json={"username": username, "password": PASSWORD},
        timeout=10,
    )
    token = response.json()["accessToken"]
    return jwt.decode(token, options={"verify_signature": False})["sub"], token


def test_a_closed_admins_token_is_refused_here_at_once_and_elsewhere_at_expiry(
    user_service, user_service_env, product_service
):
    admin_id, token = _admin_token(user_service, user_service_env)
    headers = {"Authorization": f"Bearer {token}"}
    account_url = f"{user_service.url}/api/v1/users/{admin_id}"
    assert requests.delete(account_url, headers=headers, timeout=10).status_code == 204

    refused = requests.get(account_url, headers=headers, timeout=10)
    assert refused.status_code == 401
    assert "closed" in refused.json()["detail"]

    # The product service has no account to look at: the signature and `exp` decide.
    product = {"name": f"Closing e2e {uuid.uuid4().hex[:8]}", "price": "1.00", "stock": 1}
    products = f"{product_service.url}/api/v1/products"
    still = requests.post(products, json=product, headers=headers, timeout=10)
    assert still.status_code == 201, still.text
    claims = jwt.decode(token, options={"verify_signature": False})
    assert claims["exp"] - claims["iat"] == 15 * 60

    kid = jwt.get_unverified_header(token)["kid"]
    expired = make_token(signing_key_pem(), kid=kid, sub=admin_id, role="admin", lifetime_s=-120)
    response = requests.post(
        products, json=product, headers={"Authorization": f"Bearer {expired}"}, timeout=10
    )
    assert response.status_code == 401
    assert "expired" in response.json()["detail"]
