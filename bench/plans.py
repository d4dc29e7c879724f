"""The SQL a repository method really runs, and the database's plan for each statement.

The statements are captured as the method executes them on a connection (SQLAlchemy's
`before_cursor_execute`), so the plan shown is the plan of the service's own query builder,
never of a copy that could drift from it.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa

# Plan columns worth a glance, in EXPLAIN's order; MariaDB's ANALYZE adds r_rows (rows the
# statement really read at that step) and r_filtered.
_SHOWN = (
    "id",
    "select_type",
    "table",
    "type",
    "key",
    "key_len",
    "ref",
    "rows",
    "r_rows",
    "filtered",
    "r_filtered",
    "Extra",
)


@dataclass(frozen=True)
class Plan:
    statement: str
    parameters: Any
    rows: list[dict[str, Any]]

    @property
    def warnings(self) -> list[str]:
        """What would show a missing index: a full scan or a sort of what was read."""
        found = []
        for row in self.rows:
            extra = str(row.get("Extra") or "")
            if row.get("type") == "ALL":
                found.append(f"full scan of {row.get('table')}")
            if "filesort" in extra or "temporary" in extra:
                found.append(f"{extra} on {row.get('table')}")
        return found

    def as_dict(self) -> dict[str, Any]:
        return {
            "statement": self.statement,
            "parameters": _printable(self.parameters),
            "plan": [{k: _printable(row.get(k)) for k in _SHOWN if k in row} for row in self.rows],
            "warnings": self.warnings,
        }


def plans_of(url: str, call: Callable[[sa.Connection], object]) -> list[Plan]:
    """Runs `call` on a connection to `url` and explains each SELECT it executed."""
    engine = sa.create_engine(url, poolclass=sa.pool.NullPool)
    try:
        with engine.connect() as connection:
            statements = _executed_by(connection, call)
            prefix = "ANALYZE " if _is_mariadb(connection) else "EXPLAIN "
            return [
                Plan(statement, parameters, _rows(connection, prefix + statement, parameters))
                for statement, parameters in statements
                if statement.lstrip().upper().startswith("SELECT")
            ]
    finally:
        engine.dispose()


def _executed_by(
    connection: sa.Connection, call: Callable[[sa.Connection], object]
) -> list[tuple[str, Any]]:
    captured: list[tuple[str, Any]] = []

    def record(*arguments: Any) -> None:
        # (connection, cursor, statement, parameters, context, executemany)
        captured.append((arguments[2], arguments[3]))

    # On the connection, not the engine: the dialect's own queries at connect are not ours.
    sa.event.listen(connection, "before_cursor_execute", record)
    try:
        call(connection)
    finally:
        sa.event.remove(connection, "before_cursor_execute", record)
        connection.rollback()
    return captured


def _is_mariadb(connection: sa.Connection) -> bool:
    version = connection.exec_driver_sql("SELECT VERSION()").scalar_one()
    return "mariadb" in str(version).lower()


def _rows(connection: sa.Connection, statement: str, parameters: Any) -> list[dict[str, Any]]:
    result = connection.exec_driver_sql(statement, parameters)
    return [dict(row._mapping) for row in result]


def _printable(value: Any) -> Any:
    if isinstance(value, Sequence) and not isinstance(value, str):
        return [_printable(item) for item in value]
    if isinstance(value, dict):
        return {str(key): _printable(item) for key, item in value.items()}
    return value if isinstance(value, int | float | str | type(None)) else str(value)
