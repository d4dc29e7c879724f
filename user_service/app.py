"""Composition root: builds the user service's Flask app from its settings."""

from __future__ import annotations

from pathlib import Path

from flask import Flask
from werkzeug.middleware.proxy_fix import ProxyFix

from common.auth import install_token_verifier
from common.db import Database
from common.errors import Unauthorized
from common.web import create_base_app
from user_service.address_api import address_api
from user_service.addresses import AddressBook
from user_service.api import api
from user_service.closing import AccountClosing, OpenAccountTokenVerifier
from user_service.login import LoginService
from user_service.passwords import Passwords
from user_service.profile import ProfileEditor
from user_service.service import UserService
from user_service.settings import UserSettings
from user_service.sign_up import SignUp, sign_up_throttle
from user_service.tokens import TokenSigner

MIGRATIONS_DIR = Path(__file__).parent / "migrations"


class _OwnKey:
    """The user service verifies its own tokens with its own key, without calling itself."""

    def __init__(self, signer: TokenSigner) -> None:
        self._signer = signer

    def key_for(self, kid: str) -> object:
        if kid != self._signer.kid:
            raise Unauthorized("The token was signed with an unknown key.")
        return self._signer.public_key()


def create_app(settings: UserSettings | None = None) -> Flask:
    settings = settings or UserSettings()
    db = Database.from_settings(settings)
    signer = TokenSigner.from_settings(settings)
    app = create_base_app(
        settings, package="user_service", readiness_checks={"user database": db.ping}
    )
    install_token_verifier(
        app, OpenAccountTokenVerifier(_OwnKey(signer), issuer=settings.jwt_issuer, db=db)
    )
    passwords = Passwords(settings)
    users = UserService(db, passwords)
    app.extensions["user_service"] = users
    app.extensions["sign_up"] = SignUp(users, sign_up_throttle(db, settings))
    app.extensions["login_service"] = LoginService(db, settings, passwords, signer)
    app.extensions["profile_editor"] = ProfileEditor(db, settings, passwords)
    app.extensions["account_closing"] = AccountClosing(db)
    app.extensions["address_book"] = AddressBook(db)
    app.extensions["passwords"] = passwords
    app.extensions["token_signer"] = signer
    app.extensions["database"] = db
    app.register_blueprint(api)
    app.register_blueprint(address_api)
    if settings.trusted_proxy_hops:
        # The client address (what admin and service logins are throttled by) is then the
        # one the nearest trusted proxy saw, never what the client wrote in front of it.
        app.wsgi_app = ProxyFix(app.wsgi_app, x_for=settings.trusted_proxy_hops)  # type: ignore[method-assign]
    return app
