"""Fresh databases for a test run: on MySQL when it answers, else SQLite (said once, loudly).

With CI=true an unreachable MySQL fails the run: CI must prove the MySQL path, never skip it.
"""

from __future__ import annotations

import os
import uuid
from pathlib import Path

import sqlalchemy as sa

DEFAULT_MYSQL_URL = "mysql+pymysql://root@127.0.0.1:3306"


def mysql_server_url() -> str:
    return os.environ.get("TEST_MYSQL_URL", DEFAULT_MYSQL_URL).rstrip("/")


def mysql_reachable() -> tuple[bool, str]:
    try:
        engine = sa.create_engine(mysql_server_url(), connect_args={"connect_timeout": 3})
        with engine.connect() as connection:
            connection.execute(sa.text("SELECT 1"))
        engine.dispose()
    except Exception as exc:
        return False, f"{type(exc).__name__}: {exc}"
    return True, ""


class DatabaseFactory:
    """Creates uniquely named databases and drops them all at the end of the run."""

    def __init__(self, backend: str, scratch: Path) -> None:
        self.backend = backend
        self._scratch = scratch
        self._run = uuid.uuid4().hex[:8]
        self._created: list[str] = []

    def create(self, label: str) -> str:
        name = f"shop_test_{self._run}_{label}_{len(self._created)}"
        self._created.append(name)
        if self.backend == "sqlite":
            return f"sqlite:///{self._scratch / (name + '.db')}"
        engine = sa.create_engine(mysql_server_url())
        with engine.begin() as connection:
            connection.execute(sa.text(f"CREATE DATABASE `{name}` CHARACTER SET utf8mb4"))
        engine.dispose()
        return f"{mysql_server_url()}/{name}"

    def drop_all(self) -> None:
        if self.backend != "mysql" or not self._created:
            return
        engine = sa.create_engine(mysql_server_url())
        with engine.begin() as connection:
            for name in self._created:
                connection.execute(sa.text(f"DROP DATABASE IF EXISTS `{name}`"))
        engine.dispose()
