"""The one Dockerfile, as each service's image: its shape, then its build and entrypoint
replayed for real, with the build arguments docker-compose.yml gives it.

No Docker engine runs here, so the replay stands in for `docker build` + `docker run`: the
build stage's steps run as written in a fresh virtualenv (pip install of deploy/requirements.txt
and of the copied package), then the image's ENTRYPOINT + CMD start the service on a free port
against a fresh database, and both /health and the image's own HEALTHCHECK must pass.
"""

from __future__ import annotations

import contextlib
import json
import os
import shlex
import shutil
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
import sqlalchemy as sa
import yaml

from tests.support.dockerfiles import REPOSITORY, Dockerfile, Replay, Stage
from tests.support.processes import RunningProcess, free_port, wait_for_http
from tests.support.tokens import signing_key_pem

pytestmark = pytest.mark.deploy

# Every service ships an image; the order service's also runs the relay.
SERVICES = ["user_service", "product_service", "order_service"]
# shopctl too: `shopctl users show-admin` and compose's `shopctl secrets init` run in the images.
PACKAGE_COPIES = {"pyproject.toml", "common", "shopctl", "deploy/requirements.txt"}
ENTRYPOINT_SCRIPT = "deploy/docker/entrypoint.sh"


def _compose_build(service: str) -> dict[str, Any]:
    compose = yaml.safe_load((REPOSITORY / "docker-compose.yml").read_text())
    return dict(compose["services"][service]["build"])


def _dockerfile(service: str) -> Dockerfile:
    build = _compose_build(service)
    path = REPOSITORY / build["context"] / build.get("dockerfile", "Dockerfile")
    return Dockerfile.parse(path, {k: str(v) for k, v in build["args"].items()})


def test_every_service_package_has_an_image_from_the_one_dockerfile():
    packages = {p.parent.name for p in REPOSITORY.glob("*_service/__init__.py")}
    assert packages == set(SERVICES)
    assert (REPOSITORY / "Dockerfile").is_file()
    assert not list(REPOSITORY.glob("*/Dockerfile")), "one Dockerfile says how an image is built"
    for service in SERVICES:
        assert _compose_build(service)["args"]["SERVICE"] == service


@pytest.mark.parametrize("service", SERVICES)
def test_dockerfile_shape(service):
    dockerfile = _dockerfile(service)
    build, final = dockerfile.stages[0], dockerfile.final
    assert len(dockerfile.stages) >= 2, "multi-stage: build tools stay out of the runtime image"
    for stage in dockerfile.stages:
        assert stage.base.startswith(("python:3.11-slim", "python:3.12-slim")), stage.base
    # Only this service, common/ and the lock go into the build.
    copied = {shlex.split(i.arguments)[0] for i in build.all("COPY")}
    assert copied == PACKAGE_COPIES | {service}
    runs = " && ".join(i.arguments for i in build.all("RUN"))
    assert "pip install --no-cache-dir -r deploy/requirements.txt" in runs
    assert "pip install --no-cache-dir --no-deps ." in runs
    # The runtime stage gets the virtualenv and the entrypoint, nothing from the context else.
    final_copies = [shlex.split(i.arguments) for i in final.all("COPY")]
    assert ["--from=build", "/opt/venv", "/opt/venv"] in final_copies
    assert [c[0] for c in final_copies if not c[0].startswith("--from")] == [ENTRYPOINT_SCRIPT]
    for run in final.all("RUN"):
        assert run.arguments.startswith("groupadd"), "the runtime stage only adds the user"
    user = final.last("USER")
    assert user is not None and user.arguments.split(":")[0] not in {"root", "0"}
    healthcheck = final.last("HEALTHCHECK")
    assert healthcheck is not None and "urllib.request" in healthcheck.arguments
    assert "/health" in healthcheck.arguments
    assert "curl" not in healthcheck.arguments and "wget" not in healthcheck.arguments
    env = final.all("ENV")
    assert any(f"SERVICE_PACKAGE={service}" in i.arguments for i in env)


def _service_environment(service: str, database_url: str) -> dict[str, str]:
    env = {
        "USER_DATABASE_URL": database_url,
        "PRODUCT_DATABASE_URL": database_url,
        "ORDER_DATABASE_URL": database_url,
        # Nothing listens there: /health must not need the other services or SQS.
        "JWKS_URL": "http://127.0.0.1:9/.well-known/jwks.json",
        "SQS_ENDPOINT_URL": "http://127.0.0.1:9",
        "AWS_ACCESS_KEY_ID": "test",
        "AWS_SECRET_ACCESS_KEY": "test",
        "WEB_CONCURRENCY": "1",
        "GUNICORN_THREADS": "2",
    }
    if service == "user_service":
        env |= {
            "JWT_PRIVATE_KEY": signing_key_pem(),
            "ADMIN_USERNAME": "image-admin",
            "ADMIN_PASSWORD": "image-admin-password",
            "ARGON2_TIME_COST": "1",
            "ARGON2_MEMORY_KIB": "1024",
            "ARGON2_PARALLELISM": "1",
        }
    return env


def _replayed_image(service: str, tmp_path: Path, image_layers: Path) -> tuple[Replay, Stage]:
    """The image's build stage replayed, and its final stage's files copied in."""
    dockerfile = _dockerfile(service)
    replay = Replay(dockerfile, tmp_path / "image")
    build_log = tmp_path / "build.log"
    try:
        replay.build(dockerfile.stages[0], log=build_log, layer_cache=image_layers)
    except subprocess.CalledProcessError as exc:
        pytest.fail(f"replayed build step failed ({exc.cmd}):\n{build_log.read_text()[-4000:]}")
    final = dockerfile.final
    for copy in final.all("COPY"):
        replay.copy(copy, "/")
    return replay, final


def _start(replay: Replay, final: Stage, env: dict[str, str], log_path: Path) -> RunningProcess:
    """ENTRYPOINT + CMD (`serve`), as `docker run` starts the container."""
    command = replay.command(final)
    assert command[1:] == ["serve"]
    with log_path.open("wb") as log:
        server = subprocess.Popen(
            command,
            cwd=replay.workdir(final),
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    return RunningProcess(log_path.stem, server, log_path)


def _in_image(
    replay: Replay, final: Stage, env: dict[str, str], *argv: str
) -> subprocess.CompletedProcess[str]:
    """A command as `docker exec` runs it: the image's PATH, so `shopctl` is its console
    script."""
    executable = shutil.which(argv[0], path=env["PATH"])
    assert executable is not None and executable.startswith(str(replay.root)), argv[0]
    return subprocess.run(
        [executable, *argv[1:]],
        cwd=replay.workdir(final),
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )


@pytest.mark.timeout(240)
@pytest.mark.parametrize("service", SERVICES)
def test_image_build_and_entrypoint_replayed(service, databases, image_layers, tmp_path):
    replay, final = _replayed_image(service, tmp_path, image_layers)
    port = free_port()
    env = {
        **replay.environment(final),
        **_service_environment(service, databases.create(f"image_{service}")),
        "PORT": str(port),
    }
    venv_python = replay.host("/opt/venv/bin/python")
    # The package came from the virtualenv, not from this checkout.
    located = subprocess.run(
        [str(venv_python), "-c", f"import {service}, common; print({service}.__file__)"],
        cwd=replay.workdir(final),
        env=env,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert str(replay.host("/opt/venv")) in located
    # shopctl's console script runs in every image.
    shopctl = _in_image(replay, final, env, "shopctl", "--help")
    assert shopctl.returncode == 0 and "users" in shopctl.stdout, shopctl.stderr

    # The containers run with a read-only root filesystem and a writable /tmp.
    scratch = tmp_path / "container-tmp"
    scratch.mkdir()
    env["TMPDIR"] = str(scratch)
    before = _files(replay.root)

    running = _start(replay, final, env, tmp_path / f"{service}.log")
    try:
        wait_for_http(f"http://127.0.0.1:{port}/health", running, timeout_s=60)
        healthcheck = final.last("HEALTHCHECK")
        assert healthcheck is not None
        probe = healthcheck.arguments.split("CMD", 1)[1]
        check = subprocess.run(
            _healthcheck_argv(probe, venv_python), env=env, capture_output=True, timeout=15
        )
        assert check.returncode == 0, check.stderr.decode()
        if service == "order_service":
            # The relay is the same image's alternative command, through the same entrypoint.
            relay = subprocess.run(
                [replay.command(final)[0], "python", "-m", "order_service", "worker", "--help"],
                cwd=replay.workdir(final),
                env=env,
                capture_output=True,
                text=True,
                timeout=60,
            )
            assert relay.returncode == 0 and "outbox" in relay.stdout.lower(), relay.stderr
    finally:
        running.stop()
    text = running.log_text()
    assert "database at head" in text, text[-3000:]
    written = {path for path, stamp in _files(replay.root).items() if before.get(path) != stamp}
    assert not written, f"wrote outside /tmp, which is read-only in the container: {written}"


@pytest.mark.timeout(300)
def test_user_image_starts_from_generated_secret_files_and_the_admin_logs_in(
    databases, image_layers, tmp_path
):
    """As compose runs it: `secrets-init` (the image's `shopctl secrets init`) writes the
    secrets, the user service reads them through *_FILE variables (its database password
    too, for a MySQL account made with it), prestart ensures the admin, and the server runs
    without the account passwords; the generated admin password logs in, and
    `shopctl users show-admin` prints it."""
    replay, final = _replayed_image("user_service", tmp_path, image_layers)
    image_env = replay.environment(final)
    secrets_root = tmp_path / "run-shop-secrets"
    init = _in_image(replay, final, image_env, "shopctl", "secrets", "init", str(secrets_root))
    assert init.returncode == 0, init.stderr
    user_secrets = secrets_root / "user"
    admin_password = (user_secrets / "admin_password").read_text().strip()

    database_url = databases.create("image_secret_files")
    port = free_port()
    files = {
        "ADMIN_PASSWORD_FILE": user_secrets / "admin_password",
        "SERVICE_PASSWORD_FILE": user_secrets / "service_password",
        "JWT_PRIVATE_KEY_FILE": user_secrets / "jwt-private.pem",
    }
    env = {
        **image_env,
        "USER_DATABASE_URL": database_url,
        "ADMIN_USERNAME": "admin",
        "SERVICE_USERNAME": "order-service",
        **{name: str(path) for name, path in files.items()},
        "PRESTART_SECRETS": "ADMIN_PASSWORD SERVICE_PASSWORD",
        "ARGON2_TIME_COST": "1",
        "ARGON2_MEMORY_KIB": "1024",
        "ARGON2_PARALLELISM": "1",
        "WEB_CONCURRENCY": "1",
        "GUNICORN_THREADS": "2",
        "PORT": str(port),
        "TMPDIR": str(tmp_path),
    }
    with _mysql_account(database_url, (user_secrets / "db_password").read_text().strip()) as url:
        env["USER_DATABASE_URL"] = url
        env["USER_DATABASE_PASSWORD_FILE"] = str(user_secrets / "db_password")
        running = _start(replay, final, env, tmp_path / "user_service.log")
        try:
            wait_for_http(f"http://127.0.0.1:{port}/health", running, timeout_s=60)
            secrets = {path.read_text().strip() for path in user_secrets.iterdir()}
            for pid, environ in _process_tree_environments(running.process.pid).items():
                leaked = {k for k, v in environ.items() if v in secrets or "PASSWORD" in k}
                assert leaked <= {"USER_DATABASE_PASSWORD_FILE"}, (pid, leaked)
            login = requests.post(
                f"http://127.0.0.1:{port}/api/v1/login",
                json={"username": "admin", "password": admin_password},
                timeout=10,
            )
            assert login.status_code == 200, login.text
            assert login.json()["accessToken"]
        finally:
            running.stop()
    shown = _in_image(replay, final, env, "shopctl", "users", "show-admin")
    assert shown.returncode == 0, shown.stderr
    assert shown.stdout.splitlines() == ["ADMIN_USERNAME=admin", f"ADMIN_PASSWORD={admin_password}"]


@contextlib.contextmanager
def _mysql_account(root_url: str, password: str) -> Iterator[str]:
    """A MySQL account with `password` and every privilege on root_url's database; yields its
    URL without the password (the service gets that from its file)."""
    url = sa.make_url(root_url)
    if not url.drivername.startswith("mysql"):
        yield root_url
        return
    account = f"shop_{uuid.uuid4().hex[:12]}"
    engine = sa.create_engine(url)
    hosts = ("%", "localhost", "127.0.0.1")
    try:
        with engine.begin() as connection:
            for host in hosts:
                connection.execute(
                    sa.text(f"CREATE USER '{account}'@'{host}' IDENTIFIED BY :password"),
                    {"password": password},
                )
                connection.execute(
                    sa.text(f"GRANT ALL ON `{url.database}`.* TO '{account}'@'{host}'")
                )
        yield url.set(username=account, password=None).render_as_string(hide_password=False)
    finally:
        with engine.begin() as connection:
            for host in hosts:
                connection.execute(sa.text(f"DROP USER IF EXISTS '{account}'@'{host}'"))
        engine.dispose()


def _process_tree_environments(pid: int) -> dict[int, dict[str, str]]:
    """The environment of a process and of all its descendants (gunicorn and its workers)."""
    found = {}
    pending = [pid]
    while pending:
        current = pending.pop()
        try:
            raw = Path(f"/proc/{current}/environ").read_bytes()
            children = Path(f"/proc/{current}/task/{current}/children").read_text().split()
        except FileNotFoundError:
            continue
        pairs = (entry.split("=", 1) for entry in raw.decode(errors="replace").split("\0"))
        found[current] = {pair[0]: pair[1] for pair in pairs if len(pair) == 2}
        pending += [int(child) for child in children]
    assert len(found) >= 2, "gunicorn and at least one worker"
    return found


def _files(root: Path) -> dict[str, tuple[int, int]]:
    """Every file under root with its (size, mtime in ns)."""
    found = {}
    for directory, _, names in os.walk(root):
        for name in names:
            path = os.path.join(directory, name)
            if not os.path.islink(path):
                stat = os.stat(path)
                found[path] = (stat.st_size, stat.st_mtime_ns)
    return found


def _healthcheck_argv(probe: str, venv_python: Path) -> list[str]:
    """The HEALTHCHECK's exec-form CMD, with `python` being the image's."""
    argv = [str(part) for part in json.loads(probe.strip())]
    assert argv[0] == "python"
    return [str(venv_python), *argv[1:]]
