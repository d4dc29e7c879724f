"""Typed settings, read once from the environment at start-up.

Any setting NAME can come from a file instead: NAME_FILE=/path reads it from there (as the
MySQL image reads MYSQL_PASSWORD_FILE), so a secret is a mounted file and never a value in a
process's environment. A configured password is refused at start-up, with one line naming its
variable, when it is a known placeholder or outside 8-128 characters.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from pydantic import AliasChoices, Field, ValidationError, model_validator
from pydantic.fields import FieldInfo
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
)

PASSWORD_MIN_LENGTH = 8
PASSWORD_MAX_LENGTH = 128
# What example files and docs put where a password goes; a system started with one of these
# would accept a password that anyone reading the repository knows.
PLACEHOLDER_PREFIXES = ("change-me", "changeme", "change_me")
PLACEHOLDERS = {"password"}
# A secret file is a password or a PEM key; anything larger is a wrong path.
SECRET_FILE_MAX_BYTES = 64 * 1024


class InvalidConfiguration(ValueError):
    """A setting the process must not start with; its text is one line naming the variable."""


def refuse_unusable_password(variable: str, password: str) -> None:
    """Raises InvalidConfiguration when `password` is a known placeholder or outside
    8-128 characters (the password itself is never repeated in the message)."""
    lowered = password.strip().lower()
    if lowered.startswith(PLACEHOLDER_PREFIXES) or lowered in PLACEHOLDERS:
        raise InvalidConfiguration(
            f"{variable} is a placeholder from an example file; choose a secret of your own"
        )
    if not PASSWORD_MIN_LENGTH <= len(password) <= PASSWORD_MAX_LENGTH:
        raise InvalidConfiguration(
            f"{variable} must be {PASSWORD_MIN_LENGTH}-{PASSWORD_MAX_LENGTH} characters long "
            f"(it has {len(password)})"
        )


def read_secret_file(variable: str, path: str) -> str:
    """The text of the file a *_FILE variable names, without its trailing newline."""
    try:
        with Path(path).open("rb") as file:
            data = file.read(SECRET_FILE_MAX_BYTES + 1)
    except OSError as exc:
        raise InvalidConfiguration(f"{variable}: cannot read {path} ({exc.strerror})") from None
    if len(data) > SECRET_FILE_MAX_BYTES:
        raise InvalidConfiguration(f"{variable}: {path} is larger than a secret can be")
    try:
        return data.decode("utf-8").rstrip("\r\n")
    except UnicodeDecodeError:
        raise InvalidConfiguration(f"{variable}: {path} is not UTF-8 text") from None


def variable_names(field_name: str, field: FieldInfo) -> list[str]:
    """The environment variables a setting is read from, as they are written (upper case)."""
    choices = getattr(field.validation_alias, "choices", None) or []
    names = [str(choice) for choice in choices if str(choice).isupper()]
    return names or [field_name.upper()]


class FileVariables(PydanticBaseSettingsSource):
    """NAME_FILE for every setting NAME (unless NAME_FILE is a setting of its own, as
    JWT_PRIVATE_KEY_FILE is); setting both NAME and NAME_FILE is an error, not a choice."""

    def get_field_value(self, field: FieldInfo, field_name: str) -> tuple[Any, str, bool]:
        # Unused: __call__ reads every field itself.
        return None, field_name, False

    def __call__(self) -> dict[str, Any]:
        fields = self.settings_cls.model_fields
        values: dict[str, Any] = {}
        for field_name, field in fields.items():
            if f"{field_name}_file" in fields:
                continue
            for name in variable_names(field_name, field):
                path = os.environ.get(f"{name}_FILE")
                if not path:
                    continue
                if os.environ.get(name):
                    raise InvalidConfiguration(f"set {name} or {name}_FILE, not both")
                values[field_name] = read_secret_file(f"{name}_FILE", path)
                break
        return values


class CommonSettings(BaseSettings):
    """What every service needs; each service subclasses it and names its own database URL
    (and the variable of its database password, see `database_password`)."""

    model_config = SettingsConfigDict(extra="ignore", frozen=True, populate_by_name=True)

    service_name: str = "shop"
    database_url: str = "sqlite:///var/shop.db"
    # The database password on its own (usually from a *_FILE): it replaces the URL's, so the
    # URL can be plain configuration.
    database_password: str | None = None
    db_pool_size: int = Field(default=10, ge=1)
    # How long a request waits for a pooled connection before it is answered 503.
    db_pool_timeout_s: float = Field(default=10.0, gt=0)
    # How long a statement may wait for a lock, then for the server's answer (or to be sent):
    # a silent connection becomes an error and a 503 instead of a request that never ends.
    db_lock_wait_timeout_s: int = Field(default=5, ge=1, le=3600)
    db_read_timeout_s: float = Field(default=15.0, gt=0)
    db_write_timeout_s: float = Field(default=15.0, gt=0)
    log_level: str = "INFO"
    # Requests larger than this are refused with 413 before they are parsed.
    max_body_bytes: int = Field(default=64 * 1024, ge=1024)
    jwt_issuer: str = "shop-user-service"
    jwks_url: str = "http://127.0.0.1:8082/.well-known/jwks.json"
    # Verifying services re-read the JWKS this often, so a rotated key is picked up.
    jwks_cache_seconds: int = Field(default=300, ge=1)
    # While the JWKS cannot be read again, the keys last read keep verifying for this long
    # after they were read; and it is not asked more often than every JWKS_MIN_REFETCH_S.
    jwks_max_stale_s: float = Field(default=3600, gt=0)
    jwks_min_refetch_s: float = Field(default=10, gt=0)
    http_connect_timeout_s: float = Field(default=1.0, gt=0)
    http_read_timeout_s: float = Field(default=5.0, gt=0)
    # A call to another service, every retry included, ends within this.
    http_total_timeout_s: float = Field(default=8.0, gt=0)

    def __init__(self, **values: Any) -> None:
        try:
            super().__init__(**values)
        except ValidationError as exc:
            raise InvalidConfiguration(self._one_line(exc)) from None

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        return (
            init_settings,
            env_settings,
            FileVariables(settings_cls),
            dotenv_settings,
            file_secret_settings,
        )

    @model_validator(mode="before")
    @classmethod
    def _database_password_into_url(cls, data: Any) -> Any:
        if not isinstance(data, dict):
            return data
        password = _first_present(data, cls._keys("database_password"))
        if password is None:
            return data
        url_key = next((k for k in cls._keys("database_url") if k in data), "database_url")
        url = data.get(url_key, cls.model_fields["database_url"].default)
        with_password = sa.make_url(str(url)).set(password=str(password))
        return {**data, url_key: with_password.render_as_string(hide_password=False)}

    @model_validator(mode="after")
    def _refuse_unusable_passwords(self) -> CommonSettings:
        fields = type(self).model_fields
        for field_name, field in fields.items():
            value = getattr(self, field_name)
            if field_name.endswith("_password") and value is not None:
                refuse_unusable_password(variable_names(field_name, field)[0], value)
        url_password = sa.make_url(self.database_url).password
        if url_password is not None and url_password != self.database_password:
            variable = variable_names("database_url", fields["database_url"])[0]
            refuse_unusable_password(f"the password in {variable}", str(url_password))
        return self

    @classmethod
    def _keys(cls, field_name: str) -> list[str]:
        """The keys a field's value may arrive under in the raw input: its name or aliases."""
        field = cls.model_fields[field_name]
        choices = getattr(field.validation_alias, "choices", None) or []
        return [field_name, *(str(choice) for choice in choices)]

    @classmethod
    def _one_line(cls, error: ValidationError) -> str:
        """`VARIABLE: message` for each problem, on one line (pydantic's own text is a block)."""
        problems = []
        for problem in error.errors(include_url=False):
            message = str(problem["msg"]).removeprefix("Value error, ")
            location = problem["loc"]
            if location and str(location[0]) in cls.model_fields:
                name = str(location[0])
                message = f"{variable_names(name, cls.model_fields[name])[0]}: {message}"
            problems.append(message)
        return f"{cls.__name__}: " + "; ".join(problems)

    @model_validator(mode="after")
    def _waits_fit_together(self) -> CommonSettings:
        # A driver that gave up before the server's lock wait would drop a healthy connection
        # whose statement only waits for a lock (and leave the statement running unawaited).
        _require_longer(
            "DB_READ_TIMEOUT_S",
            self.db_read_timeout_s,
            "DB_LOCK_WAIT_TIMEOUT_S",
            self.db_lock_wait_timeout_s,
        )
        # Keys that went stale sooner would stop verifying before they were due to be re-read.
        _require_longer(
            "JWKS_MAX_STALE_S", self.jwks_max_stale_s, "JWKS_CACHE_SECONDS", self.jwks_cache_seconds
        )
        return self


def database_password_alias(prefix: str) -> AliasChoices:
    """The variables a service's database password is read from (e.g. USER_DATABASE_PASSWORD,
    or USER_DATABASE_PASSWORD_FILE through FileVariables)."""
    return AliasChoices(f"{prefix}_DATABASE_PASSWORD", "database_password")


def _first_present(data: dict[str, Any], keys: list[str]) -> Any:
    return next((data[key] for key in keys if data.get(key) is not None), None)


def _require_longer(name: str, value: float, other_name: str, other_value: float) -> None:
    if value <= other_value:
        raise ValueError(f"{name} must be longer than {other_name} ({value} <= {other_value})")
