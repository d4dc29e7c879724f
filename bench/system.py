"""The system under test: every Shop process on fresh MySQL databases, production settings."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TextIO

import sqlalchemy as sa

from devstack.stack import (
    SERVICES,
    Supervisor,
    local_environment,
    start_system,
    wait_until_answering,
)

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


# Short, so that every level reaches the steady state of placing and expiring at once.
PAYMENT_TIMEOUT_S = 3


def bench_database_urls(server_url: str, prefix: str = "shop_bench") -> dict[str, str]:
    """The bench's database of each service, keyed by the service's `*_DATABASE_URL`."""
    return {spec.database_env: f"{server_url}/{prefix}_{spec.name}" for spec in SERVICES}


def fresh_databases(server_url: str, prefix: str = "shop_bench") -> dict[str, str]:
    """Empty databases, one per service, keyed by the service's `*_DATABASE_URL` variable."""
    urls = bench_database_urls(server_url, prefix)
    engine = sa.create_engine(server_url)
    with engine.begin() as connection:
        for url in urls.values():
            name = sa.make_url(url).database
            connection.execute(sa.text(f"DROP DATABASE IF EXISTS `{name}`"))
            connection.execute(sa.text(f"CREATE DATABASE `{name}` CHARACTER SET utf8mb4"))
    engine.dispose()
    return urls


def start(
    server_url: str,
    log_dir: Path,
    log: TextIO,
    overrides: dict[str, str],
    *,
    fresh: bool = True,
    prefix: str = "shop_bench",
) -> System:
    """Each process writes its output to `<name>.log` in `log_dir`; the supervisor's own
    news goes to `log`. The databases are named `<prefix>_<service>`; `fresh=False` keeps
    those of an earlier run (the services bring them to their latest migration as they
    start)."""
    database_urls = (
        fresh_databases(server_url, prefix) if fresh else bench_database_urls(server_url, prefix)
    )
    env = {
        **local_environment(),
        **database_urls,
        "ADMIN_USERNAME": ADMIN[0],
        "ADMIN_PASSWORD": ADMIN[1],
        # Each shopper leaves most of its orders unpaid, back to back: a short payment timeout
        # has the worker expire them while the load runs (its lag is measured), which keeps
        # every shopper under the default MAX_PENDING_ORDERS cap, checked on every order.
        "ORDER_PAYMENT_TIMEOUT_S": str(PAYMENT_TIMEOUT_S),
        # The bench signs every shopper up from this one address.
        "SIGNUP_MAX_PER_ADDRESS": "1000000",
        **overrides,
    }
    supervisor = Supervisor(output=log, log_dir=log_dir)
    start_system(supervisor, env)
    system = System(env, supervisor, database_urls)
    not_ready = wait_until_answering([f"{spec.url}/health/ready" for spec in SERVICES], 60)
    if not_ready:
        system.stop()
        raise TimeoutError(f"not ready after 60 s: {', '.join(not_ready)}")
    return system


def results_dir() -> Path:
    path = Path("bench/results")
    path.mkdir(parents=True, exist_ok=True)
    return path


def logs_dir() -> Path:
    """Where the system's processes write their output during a bench: one file each."""
    path = results_dir() / "logs"
    path.mkdir(exist_ok=True)
    return path
