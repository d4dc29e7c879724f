"""Replicas start together and each runs `prestart`: they must all come up."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import sqlalchemy as sa

from tests.support.dockerfiles import REPOSITORY
from tests.support.tokens import signing_key_pem

pytestmark = pytest.mark.deploy

REPLICAS = 3


def run_replicas_together(command: list[str], env: dict[str, str]) -> list[str]:
    """Starts REPLICAS copies of `command` at once; each must exit 0. Returns their outputs."""
    replicas = [
        subprocess.Popen(
            command, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
        )
        for _ in range(REPLICAS)
    ]
    outputs = [replica.communicate(timeout=100)[0] for replica in replicas]
    for replica, output in zip(replicas, outputs, strict=True):
        assert replica.returncode == 0, output
    return outputs


@pytest.mark.timeout(120)
def test_replicas_migrating_one_fresh_database_at_once(databases, database_backend):
    if database_backend != "mysql":
        pytest.skip("the migration lock is MySQL's GET_LOCK; SQLite is single-host only")
    url = databases.create("concurrent_migrations")
    env = {**os.environ, "ORDER_DATABASE_URL": url}
    run_replicas_together([sys.executable, "-m", "order_service", "prestart"], env)
    engine = sa.create_engine(url)
    with engine.connect() as connection:
        versions = connection.execute(sa.text("SELECT version_num FROM alembic_version")).all()
        tables = set(sa.inspect(connection).get_table_names())
    engine.dispose()
    assert len(versions) == 1
    assert {"orders", "order_items", "order_attempts", "outbox"} <= tables


@pytest.mark.timeout(120)
def test_replicas_starting_together_on_an_empty_user_database(databases, tmp_path):
    """Each runs the image's entrypoint; their prestarts race to create the same accounts,
    and the entrypoint's retry lets every replica go on to start its server."""
    fake_bin = tmp_path / "bin"
    fake_bin.mkdir()
    # Stands in for gunicorn: the server itself is not what this test is about.
    (fake_bin / "gunicorn").write_text("#!/bin/sh\necho gunicorn would start\n")
    (fake_bin / "gunicorn").chmod(0o755)
    env = {
        **os.environ,
        "PATH": f"{fake_bin}:{Path(sys.executable).parent}:{os.environ['PATH']}",
        "SERVICE_PACKAGE": "user_service",
        "PORT": "0",
        "USER_DATABASE_URL": databases.create("concurrent_prestart"),
        "JWT_PRIVATE_KEY": signing_key_pem(),
        "ADMIN_USERNAME": "replica-admin",
        "ADMIN_PASSWORD": "replica-admin-password",
        "SERVICE_USERNAME": "replica-service",
        "SERVICE_PASSWORD": "replica-service-password",
        "ARGON2_TIME_COST": "1",
        "ARGON2_MEMORY_KIB": "1024",
        "ARGON2_PARALLELISM": "1",
    }
    entrypoint = REPOSITORY / "deploy" / "docker" / "entrypoint.sh"
    for output in run_replicas_together(["sh", str(entrypoint), "serve"], env):
        assert "gunicorn would start" in output, output
