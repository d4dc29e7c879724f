"""`prestart` against a database that goes silent mid-migration fails instead of hanging the
pod's start for ever (the driver's connect timeout already covers the handshake)."""

from __future__ import annotations

import threading

import pytest
import sqlalchemy as sa

from common import migrations
from common.migrations import upgrade_to_head
from product_service.app import MIGRATIONS_DIR
from tests.support.blackhole import black_hole_proxy


def test_migrations_against_a_black_holed_database_end_in_an_error(
    databases, database_backend, monkeypatch
):
    if database_backend != "mysql":
        pytest.skip("a black-holed network needs a database server (SQLite has none)")
    monkeypatch.setattr(migrations, "MIGRATION_STATEMENT_DEADLINE_S", 1.0)
    url = sa.make_url(databases.create("migration_deadline"))
    outcome: list[BaseException | None] = []

    def migrate(proxied: str) -> None:
        try:
            upgrade_to_head(proxied, MIGRATIONS_DIR)
        except BaseException as exc:  # the outcome is what the test looks at
            outcome.append(exc)
        else:
            outcome.append(None)

    with black_hole_proxy(url.host or "127.0.0.1", url.port or 3306) as proxy:

        def silent_from_the_first_table(_conn, _cursor, statement, *_args) -> None:
            # Connected and under way: the database goes silent mid-migration.
            if statement.lstrip().upper().startswith("CREATE TABLE"):
                proxy.swallow()

        sa.event.listen(sa.engine.Engine, "before_cursor_execute", silent_from_the_first_table)
        proxied = url.set(host="127.0.0.1", port=proxy.port).render_as_string(hide_password=False)
        runner = threading.Thread(target=migrate, args=(proxied,), daemon=True)
        runner.start()
        runner.join(timeout=20)
        sa.event.remove(sa.engine.Engine, "before_cursor_execute", silent_from_the_first_table)
        assert not runner.is_alive(), "the migration still waits on a silent database"
    assert isinstance(outcome[0], sa.exc.OperationalError)
