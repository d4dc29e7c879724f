"""Replicas start together and each runs `prestart`: the migrations must take turns."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
import sqlalchemy as sa

pytestmark = pytest.mark.deploy

REPLICAS = 3


@pytest.mark.timeout(120)
def test_replicas_migrating_one_fresh_database_at_once(databases, database_backend):
    if database_backend != "mysql":
        pytest.skip("the migration lock is MySQL's GET_LOCK; SQLite is single-host only")
    url = databases.create("concurrent_migrations")
    env = {**os.environ, "ORDER_DATABASE_URL": url}
    replicas = [
        subprocess.Popen(
            [sys.executable, "-m", "order_service", "prestart"],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        for _ in range(REPLICAS)
    ]
    outputs = [replica.communicate(timeout=100)[0] for replica in replicas]
    for replica, output in zip(replicas, outputs, strict=True):
        assert replica.returncode == 0, output
    engine = sa.create_engine(url)
    with engine.connect() as connection:
        versions = connection.execute(sa.text("SELECT version_num FROM alembic_version")).all()
        tables = set(sa.inspect(connection).get_table_names())
    engine.dispose()
    assert len(versions) == 1
    assert {"orders", "order_items", "order_attempts", "outbox"} <= tables
