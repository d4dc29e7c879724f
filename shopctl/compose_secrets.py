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
from typing import Literal

from common.config import InvalidConfiguration, read_secret_file, refuse_unusable_password

SERVICES = ("user", "product", "order")


def new_password() -> str:
    """32 URL-safe characters (192 random bits): no quoting needed in a URL or a shell."""
    return secrets.token_urlsafe(24)


def new_signing_key() -> str:
    # Only the user image has the user service, and only it runs this.
    from user_service.tokens import generate_private_key_pem

    return generate_private_key_pem()


def refuse_unusable_key(variable: str, pem: str) -> None:
    """A key the user service could not sign with is refused here, before anything starts."""
    from cryptography.hazmat.primitives.asymmetric import rsa
    from cryptography.hazmat.primitives.serialization import load_pem_private_key

    try:
        key = load_pem_private_key(pem.encode(), password=None)
    except (ValueError, TypeError):
        raise InvalidConfiguration(f"{variable} is not an unencrypted PEM private key") from None
    if not isinstance(key, rsa.RSAPrivateKey) or key.key_size < 2048:
        raise InvalidConfiguration(f"{variable} must be an RSA key of 2048 bits or more")


@dataclass(frozen=True)
class Secret:
    variable: str  # the environment (.env) variable that replaces it
    files: tuple[str, ...]  # where it is written, relative to the root; every copy the same
    generate: Callable[[], str] = new_password
    check: Callable[[str, str], None] = refuse_unusable_password


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
        Secret("JWT_PRIVATE_KEY", ("user/jwt-private.pem",), new_signing_key, refuse_unusable_key),
    ]


Outcome = Literal["created", "replaced", "repaired", "kept"]


@dataclass
class InitReport:
    created: list[str] = field(default_factory=list)
    replaced: list[str] = field(default_factory=list)  # by a value from the environment
    repaired: list[str] = field(default_factory=list)  # made owner-only again
    kept: list[str] = field(default_factory=list)

    def add(self, outcome: Outcome, name: str) -> None:
        getattr(self, outcome).append(name)

    def summary(self) -> str:
        return (
            f"{len(self.created)} created, {len(self.replaced)} replaced from the environment, "
            f"{len(self.repaired)} made owner-only again, {len(self.kept)} kept"
        )


def init_secrets(root: Path, environ: Mapping[str, str]) -> InitReport:
    """Writes every secret that is missing or overridden; see the module's docstring."""
    report = InitReport()
    overrides = {
        s.variable: environ[s.variable] for s in compose_secrets() if environ.get(s.variable)
    }
    # Every override is checked before anything is written: a refused one changes nothing.
    for secret in compose_secrets():
        if secret.variable in overrides:
            secret.check(secret.variable, overrides[secret.variable])
    for service in SERVICES:
        _private_directory(root / service)
    for secret in compose_secrets():
        paths = [root / name for name in secret.files]
        existing = next((_read(path) for path in paths if path.exists()), None)
        value = overrides.get(secret.variable) or existing or secret.generate()
        for path in paths:
            report.add(_put(path, value), str(path.relative_to(root)))
    return report


def _put(path: Path, value: str) -> Outcome:
    if not path.exists():
        _write_private(path, value)
        return "created"
    if _read(path) != value:
        _write_private(path, value)
        return "replaced"
    if path.stat().st_mode & 0o777 != 0o600:
        path.chmod(0o600)
        return "repaired"
    return "kept"


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
