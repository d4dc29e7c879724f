"""docker compose's secrets, made on first start by the one-shot `secrets-init` service.

One directory per service under the root (each its own named volume, so a container mounts
its own service's secrets and no other's): its database's root and `shop` passwords, and for
the user service the admin and service passwords and the RS256 signing key, for the order
service the service password. Files are 0600 and owned by the user that writes them (the
images' 10001, which every Shop container runs as; the MySQL containers read theirs as root
before dropping to `mysql`).

A variable in the environment (compose passes .env's) replaces a secret; one that is absent
keeps the existing file, and a missing file gets a random value. Running it again changes
nothing, so every `docker compose up` runs it.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from common.config import read_secret_file, refuse_unusable_password

SERVICES = ("user", "product", "order")
SIGNING_KEY_VARIABLE = "JWT_PRIVATE_KEY"


def new_password() -> str:
    """32 URL-safe characters (192 random bits): no quoting needed in a URL or a shell."""
    return secrets.token_urlsafe(24)


def new_signing_key() -> str:
    # Only the user image has the user service, and only it runs this.
    from user_service.tokens import generate_private_key_pem

    return generate_private_key_pem()


@dataclass(frozen=True)
class Secret:
    variable: str  # the environment (.env) variable that replaces it
    files: tuple[str, ...]  # where it is written, relative to the root; every copy the same
    generate: Callable[[], str] = new_password


def compose_secrets() -> list[Secret]:
    database = [
        Secret(f"{service.upper()}_DB{kind.upper()}_PASSWORD", (f"{service}/db{kind}_password",))
        for service in SERVICES
        for kind in ("_root", "")
    ]
    return [
        *database,
        Secret("ADMIN_PASSWORD", ("user/admin_password",)),
        Secret("SERVICE_PASSWORD", ("user/service_password", "order/service_password")),
        Secret(SIGNING_KEY_VARIABLE, ("user/jwt-private.pem",), new_signing_key),
    ]


@dataclass
class InitReport:
    created: list[str] = field(default_factory=list)
    replaced: list[str] = field(default_factory=list)
    kept: list[str] = field(default_factory=list)

    def summary(self) -> str:
        return (
            f"{len(self.created)} created, {len(self.replaced)} replaced from the environment, "
            f"{len(self.kept)} kept"
        )


def init_secrets(root: Path, environ: Mapping[str, str]) -> InitReport:
    """Writes every secret that is missing or overridden; see the module's docstring."""
    report = InitReport()
    for service in SERVICES:
        _private_directory(root / service)
    for secret in compose_secrets():
        override = environ.get(secret.variable) or None
        if override is not None and secret.variable != SIGNING_KEY_VARIABLE:
            refuse_unusable_password(secret.variable, override)
        paths = [root / name for name in secret.files]
        existing = next((_read(path) for path in paths if path.exists()), None)
        value = override or existing or secret.generate()
        for path in paths:
            name = str(path.relative_to(root))
            if not path.exists():
                report.created.append(name)
            elif _read(path) != value:
                report.replaced.append(name)
            elif path.stat().st_mode & 0o777 != 0o600:
                path.chmod(0o600)
                report.replaced.append(name)
                continue
            else:
                report.kept.append(name)
                continue
            _write_private(path, value)
    return report


def _private_directory(directory: Path) -> None:
    directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    if directory.stat().st_mode & 0o777 != 0o700:
        directory.chmod(0o700)


def _read(path: Path) -> str:
    return read_secret_file(str(path), str(path))


def _write_private(path: Path, value: str) -> None:
    """Owner-only from the first byte, and whole or not at all (a rename)."""
    partial = path.with_name(f".{path.name}.partial")
    partial.unlink(missing_ok=True)
    descriptor = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(descriptor, "w", encoding="utf-8") as file:
        file.write(value + "\n")
        file.flush()
        os.fsync(file.fileno())
    os.replace(partial, path)
