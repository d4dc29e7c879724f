from __future__ import annotations

from pathlib import Path

from pydantic import AliasChoices, Field, model_validator

from common.config import CommonSettings, database_password_alias


class UserSettings(CommonSettings):
    service_name: str = "user_service"
    database_url: str = Field(
        default="sqlite:///var/user_service.db",
        validation_alias=AliasChoices("USER_DATABASE_URL", "database_url"),
    )
    database_password: str | None = Field(
        default=None, validation_alias=database_password_alias("USER")
    )
    # The RS256 signing key: PEM text, or a path to a PEM file.
    jwt_private_key: str | None = None
    jwt_private_key_file: Path | None = None
    access_token_ttl_s: int = Field(default=900, ge=60, le=86_400)
    # Login attempts per account (per account and client address for admin and service
    # accounts) within the window; further tries get 429 until the window ends.
    login_max_failures: int = Field(default=5, ge=1)
    login_failure_window_s: int = Field(default=900, ge=1)
    # Before that, the account slows down: after this many failures in the window, each
    # further attempt must wait a pause (the first this long, doubled after each failure);
    # an attempt that comes sooner gets 429 and is not counted.
    login_slowdown_after: int = Field(default=3, ge=1)
    login_slowdown_first_pause_s: float = Field(default=1.0, gt=0, le=60)
    # Sign-ups from one client address (an IPv4 address or an IPv6 /64) within the window;
    # further ones get 429 until it ends. Each costs a hash and a row: this bounds how fast
    # one client can fill the users table.
    signup_max_per_address: int = Field(default=20, ge=1)
    signup_window_s: int = Field(default=3600, ge=1)
    # argon2id cost; the defaults are argon2-cffi's (RFC 9106 "low memory" profile).
    argon2_time_cost: int = Field(default=3, ge=1)
    argon2_memory_kib: int = Field(default=65_536, ge=8)
    argon2_parallelism: int = Field(default=4, ge=1)
    # Each hash holds argon2_memory_kib while it runs: at most this many run at once in one
    # process, whatever its threads (plus the reserved turns below), so a process's hashing
    # memory is bounded: (2 + 1) x 64 MiB by default. A request waits this long for a turn,
    # then gets 503.
    argon2_max_concurrent_hashes: int = Field(default=2, ge=1)
    # And this many more, only for logins to admin and service accounts: a flood of logins
    # for random usernames (or of sign-ups) takes every other turn, never these, so the order
    # service still logs in. Those accounts' logins are throttled per client address.
    argon2_reserved_hashes: int = Field(default=1, ge=1)
    argon2_hash_wait_s: float = Field(default=1.0, gt=0, le=10)
    # How many proxies in front of the service append to X-Forwarded-For (an ingress: 1).
    # 0 trusts no header: the client's address is the connection's, which a client cannot
    # choose. Set it only when every request comes through that many proxies, or clients
    # choose the address they are throttled by.
    trusted_proxy_hops: int = Field(default=0, ge=0, le=5)
    admin_username: str | None = None
    admin_password: str | None = None
    service_username: str | None = None
    service_password: str | None = None

    @model_validator(mode="after")
    def _one_key_source(self) -> UserSettings:
        if self.jwt_private_key and self.jwt_private_key_file:
            raise ValueError("set JWT_PRIVATE_KEY or JWT_PRIVATE_KEY_FILE, not both")
        return self

    def private_key_pem(self) -> str:
        if self.jwt_private_key:
            return self.jwt_private_key
        if self.jwt_private_key_file:
            return self.jwt_private_key_file.read_text(encoding="utf-8")
        raise RuntimeError(
            "No signing key: set JWT_PRIVATE_KEY (PEM) or JWT_PRIVATE_KEY_FILE "
            "(`python -m user_service generate-key var/jwt-private.pem` makes one)."
        )

    def configured_accounts(self) -> list[tuple[str, str, str]]:
        """(username, password, role) for each account the configuration asks for."""
        pairs = [
            (self.admin_username, self.admin_password, "admin"),
            (self.service_username, self.service_password, "service"),
        ]
        return [(u, p, role) for u, p, role in pairs if u and p]
