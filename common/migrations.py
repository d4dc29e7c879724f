"""Alembic, driven from code: each service keeps its own scripts, this runs them safely."""

from __future__ import annotations

from pathlib import Path

import sqlalchemy as sa
from alembic import command, context
from alembic.config import Config

# Replicas starting together must not run the same DDL twice; MySQL's named lock serialises
# them, and the second one finds the schema already at head.
_LOCK_TIMEOUT_S = 120


# The longest a single migration statement may take before the driver gives up on the server.
MIGRATION_STATEMENT_DEADLINE_S = 1800.0


def alembic_config(database_url: str, migrations_dir: Path) -> Config:
    config = Config()
    config.set_main_option("script_location", str(migrations_dir))
    config.set_main_option("sqlalchemy.url", database_url.replace("%", "%%"))
    return config


def upgrade_to_head(database_url: str, migrations_dir: Path) -> None:
    _ensure_sqlite_directory(database_url)
    command.upgrade(alembic_config(database_url, migrations_dir), "head")


def _ensure_sqlite_directory(database_url: str) -> None:
    url = sa.make_url(database_url)
    if url.get_backend_name() == "sqlite" and url.database and url.database != ":memory:":
        Path(url.database).parent.mkdir(parents=True, exist_ok=True)


def run_migrations_online(lock_name: str) -> None:
    """The body of every service's `env.py`."""
    url = context.config.get_main_option("sqlalchemy.url")
    assert url is not None
    engine = sa.create_engine(url, poolclass=sa.pool.NullPool, connect_args=_deadlines(url))
    with engine.connect() as connection:
        is_mysql = connection.dialect.name == "mysql"
        if is_mysql:
            got = connection.execute(
                sa.text("SELECT GET_LOCK(:name, :timeout)"),
                {"name": lock_name, "timeout": _LOCK_TIMEOUT_S},
            ).scalar()
            if got != 1:
                raise RuntimeError(f"could not take the migration lock {lock_name!r}")
            # End the implicit transaction the SELECT began (the lock is per session and
            # stays), so Alembic opens and commits its own; otherwise the version row would
            # be rolled back at close while the DDL, which MySQL auto-commits, stayed.
            connection.commit()
        try:
            context.configure(connection=connection, render_as_batch=not is_mysql)
            with context.begin_transaction():
                context.run_migrations()
        finally:
            # A lost connection took its session's lock with it; releasing it would only hide
            # why the migration failed.
            if is_mysql and not connection.invalidated:
                connection.execute(sa.text("SELECT RELEASE_LOCK(:name)"), {"name": lock_name})
                connection.commit()
    engine.dispose()


def _deadlines(url: str) -> dict[str, float]:
    """A prestart against a database that went silent fails instead of hanging the pod's start
    for ever; the read deadline is generous, since a migration's DDL or backfill of a large
    table legitimately runs for minutes, far past a request's DB_READ_TIMEOUT_S."""
    if sa.make_url(url).get_backend_name() != "mysql":
        return {}
    return {
        "connect_timeout": 10,
        "read_timeout": MIGRATION_STATEMENT_DEADLINE_S,
        "write_timeout": MIGRATION_STATEMENT_DEADLINE_S,
    }
