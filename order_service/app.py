"""Composition root: builds the order service's Flask app, and its worker's parts, from settings."""

from __future__ import annotations

from pathlib import Path

from flask import Flask, g, has_request_context

from common.auth import JwksKeySource, KeySource, TokenVerifier, install_token_verifier
from common.db import Database
from common.http import ServiceClient
from common.web import create_base_app
from order_service.api import api
from order_service.clients import HttpProductCatalog, HttpUserDirectory, ServiceToken
from order_service.outbox import EventQueue
from order_service.service import OrderService
from order_service.settings import OrderSettings

MIGRATIONS_DIR = Path(__file__).parent / "migrations"


def create_app(settings: OrderSettings | None = None, *, keys: KeySource | None = None) -> Flask:
    """`keys` replaces the JWKS fetch in tests that hold the signing key themselves."""
    settings = settings or OrderSettings()
    db = Database.from_settings(settings)
    queue = event_queue(settings)
    app = create_base_app(
        settings,
        package="order_service",
        # Readiness is the database only: the outbox keeps events while the queue is away.
        readiness_checks={"order database": db.ping},
        reported_checks={"queue": queue.ping},
    )
    keys = keys or JwksKeySource.from_settings(settings)
    install_token_verifier(app, TokenVerifier(keys, issuer=settings.jwt_issuer))
    app.extensions["order_service"] = order_service(settings, db)
    app.extensions["database"] = db
    app.register_blueprint(api)
    return app


def order_service(settings: OrderSettings, db: Database) -> OrderService:
    users = _client(settings, settings.user_service_url, "user service")
    products = _client(settings, settings.product_service_url, "product service")
    token = ServiceToken(users, settings.service_username, settings.service_password)
    return OrderService(
        db,
        HttpProductCatalog(products, token),
        HttpUserDirectory(users, token, cache_s=settings.user_cache_seconds),
        request_id=_request_id,
        payment_timeout_s=settings.order_payment_timeout_s,
        max_pending_orders=settings.max_pending_orders,
    )


def event_queue(settings: OrderSettings) -> EventQueue:
    return EventQueue(
        settings.order_events_queue,
        endpoint_url=settings.sqs_endpoint_url,
        region=settings.aws_default_region,
    )


def _client(settings: OrderSettings, base_url: str, name: str) -> ServiceClient:
    return ServiceClient(
        base_url,
        dependency_name=name,
        connect_timeout_s=settings.http_connect_timeout_s,
        read_timeout_s=settings.http_read_timeout_s,
        total_timeout_s=settings.http_total_timeout_s,
        pool_size=settings.db_pool_size * 2,
    )


def _request_id() -> str | None:
    """The id of the request being served, carried into the events it causes."""
    return str(g.request_id) if has_request_context() and g.get("request_id") else None
