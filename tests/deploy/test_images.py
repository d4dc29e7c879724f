"""The one Dockerfile, as each service's image: its shape, then its build and entrypoint
replayed for real, with the build arguments docker-compose.yml gives it.

No Docker engine runs here, so the replay stands in for `docker build` + `docker run`: the
build stage's steps run as written in a fresh virtualenv (pip install of deploy/requirements.txt
and of the copied package), then the image's ENTRYPOINT + CMD start the service on a free port
against a fresh database, and both /health and the image's own HEALTHCHECK must pass.
"""

from __future__ import annotations

import json
import os
import shlex
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.support.dockerfiles import REPOSITORY, Dockerfile, Replay
from tests.support.processes import RunningProcess, free_port, wait_for_http
from tests.support.tokens import signing_key_pem

pytestmark = pytest.mark.deploy

# Every service ships an image; the order service's also runs the relay.
SERVICES = ["user_service", "product_service", "order_service"]
PACKAGE_COPIES = {"pyproject.toml", "common", "deploy/requirements.txt"}
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


@pytest.mark.timeout(240)
@pytest.mark.parametrize("service", SERVICES)
def test_image_build_and_entrypoint_replayed(service, databases, image_layers, tmp_path):
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

    # The containers run with a read-only root filesystem and a writable /tmp.
    scratch = tmp_path / "container-tmp"
    scratch.mkdir()
    env["TMPDIR"] = str(scratch)
    before = _files(replay.root)

    command = replay.command(final)
    assert command[1:] == ["serve"]
    log_path = tmp_path / f"{service}.log"
    with log_path.open("wb") as log:
        server = subprocess.Popen(
            command,
            cwd=replay.workdir(final),
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    running = RunningProcess(service, server, log_path)
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
                [command[0], "python", "-m", "order_service", "worker", "--help"],
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
