"""Composition root: builds the product service's Flask app from its settings."""

from __future__ import annotations

from pathlib import Path

from flask import Flask

from common.auth import JwksKeySource, KeySource, TokenVerifier, install_token_verifier
from common.db import Database
from common.web import create_base_app
from product_service.api import api
from product_service.service import ProductService
from product_service.settings import ProductSettings

MIGRATIONS_DIR = Path(__file__).parent / "migrations"


def create_app(settings: ProductSettings | None = None, *, keys: KeySource | None = None) -> Flask:
    """`keys` replaces the JWKS fetch in tests that hold the signing key themselves."""
    settings = settings or ProductSettings()
    db = Database.from_settings(settings)
    app = create_base_app(
        settings, package="product_service", readiness_checks={"product database": db.ping}
    )
    keys = keys or JwksKeySource.from_settings(settings)
    install_token_verifier(app, TokenVerifier(keys, issuer=settings.jwt_issuer))
    app.extensions["product_service"] = ProductService(db)
    app.extensions["database"] = db
    app.register_blueprint(api)
    return app
