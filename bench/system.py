"""The system under test: every Shop process on fresh MySQL databases, production settings."""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import TextIO

import requests
import sqlalchemy as sa

from devstack.stack import SERVICES, Supervisor, local_environment, start_system

ADMIN = ("bench-admin", "bench-admin-password")


@dataclass
class System:
    env: dict[str, str]
    supervisor: Supervisor
    database_urls: dict[str, str]

    def url(self, service: str) -> str:
        return next(spec.url for spec in SERVICES if spec.name == service)

    def stop(self) -> None:
        self.supervisor.stop()


def fresh_databases(server_url: str, prefix: str = "shop_bench") -> dict[str, str]:
    """Empty databases, one per service, keyed by the service's `*_DATABASE_URL` variable."""
    engine = sa.create_engine(server_url)
    urls = {}
    with engine.begin() as connection:
        for spec in SERVICES:
            name = f"{prefix}_{spec.name}"
            connection.execute(sa.text(f"DROP DATABASE IF EXISTS `{name}`"))
            connection.execute(sa.text(f"CREATE DATABASE `{name}` CHARACTER SET utf8mb4"))
            urls[spec.database_env] = f"{server_url}/{name}"
    engine.dispose()
    return urls


def start(server_url: str, log: TextIO, overrides: dict[str, str]) -> System:
    database_urls = fresh_databases(server_url)
    env = {
        **local_environment(),
        **database_urls,
        "ADMIN_USERNAME": ADMIN[0],
        "ADMIN_PASSWORD": ADMIN[1],
        **overrides,
    }
    supervisor = Supervisor(output=log)
    start_system(supervisor, env)
    system = System(env, supervisor, database_urls)
    for spec in SERVICES:
        _wait_ready(f"{spec.url}/health/ready")
    return system


def _wait_ready(url: str, timeout_s: float = 60) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            if requests.get(url, timeout=2).status_code == 200:
                return
        except requests.RequestException:
            pass
        time.sleep(0.2)
    raise TimeoutError(f"{url} not ready after {timeout_s}s")


def results_dir() -> Path:
    path = Path("bench/results")
    path.mkdir(parents=True, exist_ok=True)
    return path
