"""Typed settings, read once from the environment at start-up."""

from __future__ import annotations

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class CommonSettings(BaseSettings):
    """What every service needs; each service subclasses it and names its own database URL."""

    model_config = SettingsConfigDict(extra="ignore", frozen=True, populate_by_name=True)

    service_name: str = "shop"
    database_url: str = "sqlite:///var/shop.db"
    db_pool_size: int = Field(default=10, ge=1)
    # How long a request waits for a pooled connection before it is answered 503.
    db_pool_timeout_s: float = Field(default=10.0, gt=0)
    log_level: str = "INFO"
    # Requests larger than this are refused with 413 before they are parsed.
    max_body_bytes: int = Field(default=64 * 1024, ge=1024)
    jwt_issuer: str = "shop-user-service"
    jwks_url: str = "http://127.0.0.1:8082/.well-known/jwks.json"
    # Verifying services re-read the JWKS this often, so a rotated key is picked up.
    jwks_cache_seconds: int = Field(default=300, ge=1)
    http_connect_timeout_s: float = Field(default=1.0, gt=0)
    http_read_timeout_s: float = Field(default=5.0, gt=0)
