"""Services as real processes (gunicorn, as in production) on free ports, for e2e tests."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import requests

from devstack.stack import SERVICES, gunicorn_worker_class


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@dataclass
class RunningProcess:
    name: str
    process: subprocess.Popen[bytes]
    log_path: Path
    url: str = ""

    def log_text(self) -> str:
        return self.log_path.read_text(errors="replace")

    def kill(self) -> None:
        """SIGKILL the whole process group: a crash, with no graceful shutdown."""
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait()

    def stop(self) -> None:
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait()


def start_process(
    name: str, command: list[str], env: dict[str, str], log_dir: Path
) -> RunningProcess:
    log_path = log_dir / f"{name}.log"
    # Appended, so a restarted process keeps the log of its previous life.
    with log_path.open("ab") as log:
        process = subprocess.Popen(
            command,
            env={**os.environ, **env},
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    return RunningProcess(name, process, log_path)


def run_cli(module: str, *args: str, env: dict[str, str]) -> None:
    done = subprocess.run(
        [sys.executable, "-m", module, *args],
        env={**os.environ, **env},
        capture_output=True,
        text=True,
    )
    if done.returncode != 0:
        raise RuntimeError(f"{module} {' '.join(args)} failed:\n{done.stdout}\n{done.stderr}")


def start_service(
    package: str,
    env: dict[str, str],
    log_dir: Path,
    *,
    workers: int = 2,
    port: int | None = None,
    name: str | None = None,
) -> RunningProcess:
    """gunicorn with the production config and the service's own worker class (the order
    service's is gevent), on `port` (else a free one); returns once /health answers. Starting
    again on the same port brings a stopped service back where clients expect it."""
    port = port or free_port()
    command = [
        sys.executable,
        "-m",
        "gunicorn",
        "-c",
        "python:common.gunicorn_conf",
        "--bind",
        f"127.0.0.1:{port}",
        f"{package}.app:create_app()",
    ]
    spec = next(spec for spec in SERVICES if spec.name == package)
    service_env = {
        **env,
        "GUNICORN_WORKER_CLASS": gunicorn_worker_class(spec, env),
        "WEB_CONCURRENCY": str(workers),
    }
    running = start_process(name or package, command, service_env, log_dir)
    running.url = f"http://127.0.0.1:{port}"
    wait_for_http(f"{running.url}/health", running)
    return running


def wait_for_http(url: str, running: RunningProcess, timeout_s: float = 30) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if running.process.poll() is not None:
            raise RuntimeError(f"{running.name} exited early:\n{running.log_text()[-3000:]}")
        try:
            if requests.get(url, timeout=1).status_code == 200:
                return
        except requests.RequestException:
            pass
        time.sleep(0.1)
    running.stop()
    raise TimeoutError(
        f"{running.name} did not answer {url} in {timeout_s}s:\n{running.log_text()[-3000:]}"
    )
