"""compose's `secrets-init` step (`shopctl secrets init DIR`) run for real in a temp directory."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.hazmat.primitives.serialization import load_pem_private_key

from shopctl.compose_secrets import compose_secrets

pytestmark = pytest.mark.deploy

OVERRIDES = {secret.variable for secret in compose_secrets()}


def _init(root: Path, **overrides: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k not in OVERRIDES}
    return subprocess.run(
        [sys.executable, "-m", "shopctl", "secrets", "init", str(root)],
        env={**env, **overrides},
        capture_output=True,
        text=True,
        timeout=60,
    )


def _state(root: Path) -> dict[str, tuple[bytes, int, int, int]]:
    """Every file and directory under root: (content, mode, inode, mtime in ns)."""
    found = {}
    for path in sorted(root.rglob("*")):
        status = path.lstat()
        content = path.read_bytes() if path.is_file() else b""
        found[str(path.relative_to(root))] = (
            content,
            stat.S_IMODE(status.st_mode),
            status.st_ino,
            status.st_mtime_ns,
        )
    return found


def test_first_run_creates_every_secret_owner_only_and_the_second_changes_nothing(tmp_path):
    root = tmp_path / "shop-secrets"
    first = _init(root)
    assert first.returncode == 0, first.stderr
    assert "shopctl users show-admin" in first.stdout

    expected = {name for secret in compose_secrets() for name in secret.files}
    state = _state(root)
    files = {name for name in state if (root / name).is_file()}
    assert files == expected
    assert {name for name in state if (root / name).is_dir()} == {"user", "product", "order"}
    for name, (_, mode, _, _) in state.items():
        assert mode == (0o600 if name in files else 0o700), (name, oct(mode))
        assert (root / name).stat().st_uid == os.getuid()

    text = {name: (root / name).read_text().rstrip("\n") for name in files}
    key = load_pem_private_key(text.pop("user/jwt-private.pem").encode(), password=None)
    assert isinstance(key, rsa.RSAPrivateKey) and key.key_size >= 2048
    assert text["user/service_password"] == text["order/service_password"]
    del text["order/service_password"]
    assert len(set(text.values())) == len(text), "every password is its own"
    for password in text.values():
        assert len(password) == 32 and password.isascii()

    second = _init(root)
    assert second.returncode == 0, second.stderr
    assert "0 created, 0 replaced from the environment, 0 made owner-only" in second.stdout
    assert _state(root) == state


def test_an_environment_value_replaces_its_secret_and_a_placeholder_is_refused(tmp_path):
    root = tmp_path / "shop-secrets"
    assert _init(root).returncode == 0
    before = _state(root)

    refused = _init(root, ADMIN_PASSWORD="change-me-admin-password")
    assert refused.returncode != 0
    assert refused.stderr.strip().count("\n") == 0 and "ADMIN_PASSWORD" in refused.stderr
    assert _state(root) == before

    chosen = _init(root, SERVICE_PASSWORD="our-own-service-password")
    assert chosen.returncode == 0, chosen.stderr
    for copy in ("user/service_password", "order/service_password"):
        assert (root / copy).read_text() == "our-own-service-password\n"
        assert stat.S_IMODE((root / copy).stat().st_mode) == 0o600
    after = _state(root)
    # The others untouched (the directories' mtimes move with the two renames).
    unchanged = {name for name in before if "/" in name} - {
        "user/service_password",
        "order/service_password",
    }
    assert {name: after[name] for name in unchanged} == {name: before[name] for name in unchanged}


def test_a_signing_key_that_cannot_sign_is_refused(tmp_path):
    root = tmp_path / "shop-secrets"
    refused = _init(root, JWT_PRIVATE_KEY="-----BEGIN PRIVATE KEY-----\nnot a key\n")
    assert refused.returncode != 0
    assert "JWT_PRIVATE_KEY is not an unencrypted PEM private key" in refused.stderr
    assert not root.exists(), "a refused override writes nothing"


def test_a_loosened_file_is_made_owner_only_again(tmp_path):
    root = tmp_path / "shop-secrets"
    assert _init(root).returncode == 0
    (root / "user" / "admin_password").chmod(0o644)
    (root / "order").chmod(0o755)
    again = _init(root)
    assert again.returncode == 0, again.stderr
    assert "0 created, 0 replaced from the environment, 1 made owner-only again" in again.stdout
    assert stat.S_IMODE((root / "user" / "admin_password").stat().st_mode) == 0o600
    assert stat.S_IMODE((root / "order").stat().st_mode) == 0o700
