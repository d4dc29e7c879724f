from __future__ import annotations

import os

import pytest

from tests.support.databases import DatabaseFactory, mysql_reachable, mysql_server_url
from tests.support.sqs import start_local_sqs

_BACKEND: dict[str, str] = {}


def pytest_configure(config: pytest.Config) -> None:
    reachable, reason = mysql_reachable()
    if reachable:
        _BACKEND["name"] = "mysql"
        return
    if os.environ.get("CI", "").lower() == "true":
        raise pytest.UsageError(
            f"CI=true but MySQL at {mysql_server_url()} is unreachable ({reason}); "
            "CI must run the suite on MySQL."
        )
    _BACKEND["name"] = "sqlite"


def _backend_line() -> str:
    if _BACKEND.get("name") == "mysql":
        return f"databases: MySQL at {mysql_server_url()} (fresh databases, dropped after)"
    return (
        f"databases: MySQL at {mysql_server_url()} is unreachable, so this run used SQLite "
        "(set TEST_MYSQL_URL to test on MySQL)"
    )


def pytest_report_header(config: pytest.Config) -> str:
    return _backend_line()


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    # Said last as well, so even `-q` output shows which database the run proved.
    terminalreporter.write_line(_backend_line())


@pytest.fixture(scope="session")
def database_backend() -> str:
    return _BACKEND["name"]


@pytest.fixture(scope="session")
def databases(tmp_path_factory: pytest.TempPathFactory):
    factory = DatabaseFactory(_BACKEND["name"], tmp_path_factory.mktemp("databases"))
    yield factory
    factory.drop_all()


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    # Behaviour that must not depend on the database: a test that takes `each_backend` runs
    # on SQLite (what `make run` uses) and, in a run that has MySQL, on MySQL as well.
    if "each_backend" in metafunc.fixturenames:
        backends = ["sqlite", "mysql"] if _BACKEND["name"] == "mysql" else ["sqlite"]
        metafunc.parametrize("each_backend", backends, scope="session")


@pytest.fixture(scope="session")
def databases_of(databases: DatabaseFactory, tmp_path_factory: pytest.TempPathFactory):
    """`databases_of(backend)`: a DatabaseFactory for that backend (the run's own, or SQLite)."""
    factories = {databases.backend: databases}

    def factory_of(backend: str) -> DatabaseFactory:
        if backend not in factories:
            factories[backend] = DatabaseFactory(backend, tmp_path_factory.mktemp(backend))
        return factories[backend]

    yield factory_of
    for factory in factories.values():
        if factory is not databases:
            factory.drop_all()


@pytest.fixture(scope="session")
def local_sqs(tmp_path_factory: pytest.TempPathFactory):
    """A real LocalStack SQS endpoint with `order-events` and `order-events-dlq`."""
    yield from start_local_sqs(tmp_path_factory.mktemp("sqs"))
