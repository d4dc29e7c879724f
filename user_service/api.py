"""HTTP routes: parse, authorise, call the service, render. Nothing else lives here."""

from __future__ import annotations

from typing import Annotated, Any

from flask import Blueprint, Response, current_app, jsonify, request, url_for
from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    field_validator,
)

from common.auth import ADMIN, CUSTOMER, SERVICE, current_principal, require_roles
from common.db import isoformat
from common.inputs import json_body, present_means_a_value
from user_service.closing import AccountClosing
from user_service.login import LoginService
from user_service.phones import Phone
from user_service.profile import AccountEdit, ProfileEditor
from user_service.repository import User
from user_service.service import CONFIGURED_ACCOUNTS_DOMAIN, UserService, is_reserved_email
from user_service.sign_up import SignUp

api = Blueprint("users", __name__)

Username = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9_.-]{3,50}$")]
Password = Annotated[str, StringConstraints(min_length=8, max_length=128)]
CurrentPassword = Annotated[str, StringConstraints(min_length=1, max_length=128)]
# A dot-atom mailbox at a domain with a letter TLD: syntax only (deliverability is the mail
# server's business), and exactly the pattern the OpenAPI document states.
EMAIL_PATTERN = (
    r"^[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+(\.[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+)*"
    r"@([A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?\.)+[A-Za-z]{2,63}$"
)


def _not_reserved(email: str) -> str:
    if is_reserved_email(email):
        raise ValueError(f"addresses at {CONFIGURED_ACCOUNTS_DOMAIN} are the shop's own")
    return email


# Every endpoint that sets an email uses this type, so none can take a configured account's.
Email = Annotated[
    str, StringConstraints(pattern=EMAIL_PATTERN, max_length=254), AfterValidator(_not_reserved)
]


class RegisterUser(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)

    username: Username
    email: Email
    password: Password
    phone: Phone | None = None


class UserPatch(BaseModel):
    """Absent fields stay as they are; `phone: null` erases the phone."""

    model_config = ConfigDict(extra="forbid", strict=True)

    email: Email | None = None
    phone: Phone | None = None
    password: Password | None = None
    # Bounded before argon2 ever sees it (no account's password is longer).
    current_password: CurrentPassword | None = Field(default=None, alias="currentPassword")

    _present_means_a_value = field_validator(
        "email", "password", "current_password", mode="before"
    )(present_means_a_value)

    def edit(self) -> AccountEdit:
        return AccountEdit(
            email=self.email,
            phone=self.phone,
            clear_phone="phone" in self.model_fields_set and self.phone is None,
            password=self.password,
            current_password=self.current_password,
        )


class Login(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)

    username: Annotated[str, StringConstraints(min_length=1, max_length=254)]
    password: Annotated[str, StringConstraints(min_length=1, max_length=1024)]


def users() -> UserService:
    service: UserService = current_app.extensions["user_service"]
    return service


def sign_ups() -> SignUp:
    sign_up: SignUp = current_app.extensions["sign_up"]
    return sign_up


def logins() -> LoginService:
    service: LoginService = current_app.extensions["login_service"]
    return service


def profiles() -> ProfileEditor:
    editor: ProfileEditor = current_app.extensions["profile_editor"]
    return editor


def closing() -> AccountClosing:
    account_closing: AccountClosing = current_app.extensions["account_closing"]
    return account_closing


def user_json(user: User) -> dict[str, Any]:
    return {
        "id": user.id,
        "username": user.username,
        "email": user.email,
        "phone": user.phone,
        "role": user.role,
        "createdAt": isoformat(user.created_at),
        "updatedAt": isoformat(user.updated_at),
    }


@api.post("/api/v1/users")
def register() -> tuple[Response, int, dict[str, str]]:
    command = json_body(RegisterUser)
    user = sign_ups().register(
        command.username, command.email, command.password, command.phone, request.remote_addr
    )
    location = url_for("users.get_user", user_id=user.id)
    return jsonify(user_json(user)), 201, {"Location": location}


@api.get("/api/v1/users/<id:user_id>")
@require_roles(CUSTOMER, ADMIN, SERVICE)
def get_user(user_id: str) -> Response:
    return jsonify(user_json(users().get_user(user_id, current_principal())))


@api.patch("/api/v1/users/<id:user_id>")
@require_roles(CUSTOMER, ADMIN)
def update_user(user_id: str) -> Response:
    edit = json_body(UserPatch).edit()
    return jsonify(user_json(profiles().update_user(user_id, current_principal(), edit)))


@api.delete("/api/v1/users/<id:user_id>")
@require_roles(CUSTOMER, ADMIN)
def close_account(user_id: str) -> tuple[str, int]:
    closing().close_account(user_id, current_principal())
    return "", 204


@api.post("/api/v1/login")
def login() -> tuple[Response, int, dict[str, str]]:
    command = json_body(Login)
    token = logins().login(command.username, command.password, request.remote_addr)
    body = {"accessToken": token.access_token, "tokenType": "Bearer", "expiresIn": token.expires_in}
    return jsonify(body), 200, {"Cache-Control": "no-store"}


@api.get("/.well-known/jwks.json")
def jwks() -> tuple[Response, int, dict[str, str]]:
    signer = current_app.extensions["token_signer"]
    return jsonify(signer.jwks()), 200, {"Cache-Control": "public, max-age=300"}
