"""`make run`: every Shop process on this machine, their logs interleaved, Ctrl-C stops them all."""

from __future__ import annotations

import importlib.util
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO, TextIO

from common.config import InvalidConfiguration, read_secret_file, refuse_unusable_password
from devstack import logview, sqs
from shopctl.config import CREDENTIALS_FILE, read_env_file

VAR = Path("var")
SQS_HOST, SQS_PORT = "127.0.0.1", 4566
COLOURS = ["\033[36m", "\033[35m", "\033[33m", "\033[32m", "\033[34m", "\033[31m"]
RESET = "\033[0m"


@dataclass(frozen=True)
class ServiceSpec:
    name: str
    port: int
    database_env: str
    # Extra long-running processes of the same package, e.g. the order service's relay.
    workers: dict[str, list[str]] = field(default_factory=dict)
    # gunicorn workers, their class, and threads per gthread worker, unless WEB_CONCURRENCY,
    # GUNICORN_WORKER_CLASS or GUNICORN_THREADS is exported (see gunicorn_conf).
    gunicorn_workers: int = 2
    gunicorn_worker_class: str = "gthread"
    gunicorn_threads: int = 8

    @property
    def available(self) -> bool:
        return importlib.util.find_spec(self.name) is not None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"


SERVICES = [
    # 2 workers x 8 threads; each worker hashes at most ARGON2_MAX_CONCURRENT_HASHES (2) plus
    # ARGON2_RESERVED_HASHES (1) passwords at once, 64 MiB each: 384 MiB of hashing at most,
    # the same as compose and k8s (they run the same defaults).
    ServiceSpec("user_service", 8082, "USER_DATABASE_URL"),
    # The pruner deletes released reservation lines past their retention hourly, as compose's
    # product_pruner and the k8s CronJob do.
    ServiceSpec(
        "product_service",
        8081,
        "PRODUCT_DATABASE_URL",
        workers={
            "product_pruner": [
                sys.executable,
                "-m",
                "product_service",
                "prune-reservations",
                "--every",
                "3600",
            ]
        },
        gunicorn_threads=4,
    ),
    # One gevent worker: every order in flight then shares the reservation batches and group
    # commits (fewer, larger ones), and its waits on the product service and the database cost
    # no thread switches (see gunicorn_conf).
    ServiceSpec(
        "order_service",
        8080,
        "ORDER_DATABASE_URL",
        workers={"order_worker": [sys.executable, "-m", "order_service", "worker"]},
        gunicorn_workers=1,
        gunicorn_worker_class="gevent",
    ),
]


def local_environment() -> dict[str, str]:
    """The configuration `make run` gives every process; anything already exported wins."""
    env = dict(os.environ)
    for spec in SERVICES:
        env.setdefault(spec.database_env, f"sqlite:///{VAR / spec.name}.db")
    env.setdefault("JWT_PRIVATE_KEY_FILE", str(VAR / "jwt-private.pem"))
    env.setdefault("SQS_ENDPOINT_URL", f"http://{SQS_HOST}:{SQS_PORT}")
    for key, value in sqs.LOCAL_CREDENTIALS.items():
        env.setdefault(key, value)
    for key, value in _local_accounts(env).items():
        if not env.get(key) and not env.get(f"{key}_FILE"):
            env[key] = value
    env.setdefault("USER_SERVICE_URL", "http://127.0.0.1:8082")
    env.setdefault("PRODUCT_SERVICE_URL", "http://127.0.0.1:8081")
    env.setdefault("JWKS_URL", "http://127.0.0.1:8082/.well-known/jwks.json")
    env.setdefault("PYTHONUNBUFFERED", "1")
    return env


def _local_accounts(exported: dict[str, str]) -> dict[str, str]:
    """The admin and service accounts `make run` ensures, kept in var/credentials.env so
    restarts keep them: made once with random passwords, and whatever is exported
    (ADMIN_PASSWORD, or ADMIN_PASSWORD_FILE as the services read it) replaces its line, so the
    file always says what the running system uses (`make demo` logs in with it)."""
    path = VAR / CREDENTIALS_FILE.name
    saved = read_env_file(path)
    generated = {
        "ADMIN_USERNAME": "admin",
        "ADMIN_PASSWORD": secrets.token_urlsafe(12),
        "SERVICE_USERNAME": "order-service",
        "SERVICE_PASSWORD": secrets.token_urlsafe(24),
    }
    accounts = {}
    for name, new_value in generated.items():
        exported_value = exported.get(name)
        if not exported_value and exported.get(f"{name}_FILE"):
            exported_value = read_secret_file(f"{name}_FILE", exported[f"{name}_FILE"])
        if exported_value and name.endswith("_PASSWORD"):
            try:
                refuse_unusable_password(name, exported_value)
            except InvalidConfiguration as exc:
                raise SystemExit(f"devstack: {exc}") from None
        accounts[name] = exported_value or saved.get(name) or new_value
    if accounts != saved:
        VAR.mkdir(exist_ok=True)
        path.touch(mode=0o600)
        path.chmod(0o600)
        path.write_text("".join(f"{name}={value}\n" for name, value in accounts.items()))
    return accounts


class Supervisor:
    """Starts processes, prefixes their output, and stops them all together.

    With `log_dir`, each process writes its output straight to `<name>.log` there instead, and
    no thread of this process relays it: the bench does this because relaying every access
    line cost its load generator ~0.2 ms of CPU per order, on the cores the system shares.
    """

    def __init__(self, output: TextIO | None = None, *, log_dir: Path | None = None) -> None:
        self._processes: dict[str, subprocess.Popen[bytes]] = {}
        self._output = output or sys.stdout
        self._log_dir = log_dir
        self._colour = self._output.isatty()
        self._stopping = threading.Event()

    @property
    def processes(self) -> dict[str, subprocess.Popen[bytes]]:
        return dict(self._processes)

    def start(self, name: str, command: list[str], env: dict[str, str]) -> None:
        if self._log_dir is not None:
            with (self._log_dir / f"{name}.log").open("wb") as log:
                self._processes[name] = self._popen(command, env, log)
            return
        process = self._popen(command, env, subprocess.PIPE)
        self._processes[name] = process
        threading.Thread(target=self._pump, args=(name, process), daemon=True).start()

    @staticmethod
    def _popen(
        command: list[str], env: dict[str, str], stdout: int | BinaryIO
    ) -> subprocess.Popen[bytes]:
        return subprocess.Popen(
            command, env=env, stdout=stdout, stderr=subprocess.STDOUT, start_new_session=True
        )

    def _pump(self, name: str, process: subprocess.Popen[bytes]) -> None:
        colour = COLOURS[list(self._processes).index(name) % len(COLOURS)] if self._colour else ""
        assert process.stdout is not None
        for raw in process.stdout:
            line = raw.decode(errors="replace")
            shown = (
                logview.for_terminal(name, line, colour)
                if self._output.isatty()
                else logview.as_json(name, line)
            )
            self._output.write(shown + "\n")
            self._output.flush()

    def announce(self, text: str) -> None:
        """Supervisor news (the banner): as is on a terminal, JSON lines in a log file."""
        if self._output.isatty():
            self._output.write(text + "\n")
        else:
            for line in filter(None, (line.strip() for line in text.splitlines())):
                self._output.write(logview.as_json("devstack", line) + "\n")
        self._output.flush()

    def wait(self) -> int:
        """Blocks until Ctrl-C / SIGTERM or until any process dies; then stops the rest."""
        signal.signal(signal.SIGTERM, lambda *_: self._stopping.set())
        try:
            while not self._stopping.wait(0.5):
                for name, process in self._processes.items():
                    if process.poll() is not None:
                        self.announce(
                            f"devstack: {name} exited with {process.returncode}; stopping"
                        )
                        self._stopping.set()
        except KeyboardInterrupt:
            pass
        return self.stop()

    def stop(self) -> int:
        for process in self._processes.values():
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGTERM)
        for name, process in self._processes.items():
            try:
                process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.announce(f"devstack: {name} did not stop in 15 s; killing it")
                os.killpg(process.pid, signal.SIGKILL)
        self.announce("devstack: stopped")
        return 0


def gunicorn_command(spec: ServiceSpec) -> list[str]:
    return [
        sys.executable,
        "-m",
        "gunicorn",
        "-c",
        "python:common.gunicorn_conf",
        "--bind",
        f"127.0.0.1:{spec.port}",
        f"{spec.name}.app:create_app()",
    ]


def _refuse_busy_ports(ports: list[int]) -> None:
    busy = []
    for port in ports:
        with socket.socket() as probe:
            if probe.connect_ex(("127.0.0.1", port)) == 0:
                busy.append(port)
    if busy:
        raise SystemExit(
            f"devstack: port(s) {', '.join(map(str, busy))} already in use; "
            "is another `make run` still running?"
        )


class StartFailed(RuntimeError):
    """A service could not start; its own output says why."""


def run() -> int:
    env = local_environment()
    supervisor = Supervisor()
    try:
        services = start_system(supervisor, env)
    except StartFailed as exc:
        print(exc, file=sys.stderr)
        return 1
    # The banner says "running" only once every service answers (or the wait gives up).
    wait_until_answering([f"{spec.url}/health" for spec in services])
    supervisor.announce(banner(services, env))
    return supervisor.wait()


def wait_until_answering(urls: list[str], timeout_s: float = 30.0) -> list[str]:
    """Waits, within one overall deadline, for each URL to answer 200; returns those that
    never did."""
    deadline = time.monotonic() + timeout_s
    silent = []
    for url in urls:
        while True:
            try:
                with urllib.request.urlopen(url, timeout=1):  # noqa: S310 - our own http URLs
                    break
            except OSError:
                if time.monotonic() >= deadline:
                    silent.append(url)
                    break
                time.sleep(0.2)
    return silent


def start_system(supervisor: Supervisor, env: dict[str, str]) -> list[ServiceSpec]:
    """Starts the local SQS (if configured), then each service and its workers."""
    VAR.mkdir(exist_ok=True)
    subprocess.run(
        [sys.executable, "-m", "user_service", "generate-key", env["JWT_PRIVATE_KEY_FILE"]],
        env=env,
        check=True,
    )
    services = [spec for spec in SERVICES if spec.available]
    local_sqs = env["SQS_ENDPOINT_URL"] == f"http://{SQS_HOST}:{SQS_PORT}"
    _refuse_busy_ports([spec.port for spec in services] + ([SQS_PORT] if local_sqs else []))
    try:
        if local_sqs:
            _start_local_sqs(supervisor, env)
        for spec in services:
            _start_service(supervisor, spec, env)
    except (Exception, KeyboardInterrupt):
        supervisor.stop()
        raise
    return services


def gunicorn_workers(spec: ServiceSpec, env: dict[str, str]) -> int:
    """The service's own worker count, unless WEB_CONCURRENCY is exported for every service."""
    return int(env.get("WEB_CONCURRENCY") or spec.gunicorn_workers)


def gunicorn_worker_class(spec: ServiceSpec, env: dict[str, str]) -> str:
    """The service's own worker class, unless GUNICORN_WORKER_CLASS is exported for every
    service."""
    return env.get("GUNICORN_WORKER_CLASS") or spec.gunicorn_worker_class


def gunicorn_threads(spec: ServiceSpec, env: dict[str, str]) -> int:
    """The service's own thread count, unless GUNICORN_THREADS is exported for every service."""
    return int(env.get("GUNICORN_THREADS") or spec.gunicorn_threads)


def _start_service(supervisor: Supervisor, spec: ServiceSpec, env: dict[str, str]) -> None:
    prestart = subprocess.run([sys.executable, "-m", spec.name, "prestart"], env=env)
    if prestart.returncode != 0:
        # Its own error (one line for a refused setting) is just above.
        raise StartFailed(f"devstack: {spec.name} prestart exited {prestart.returncode}")
    service_env = {
        **env,
        "WEB_CONCURRENCY": str(gunicorn_workers(spec, env)),
        "GUNICORN_WORKER_CLASS": gunicorn_worker_class(spec, env),
        "GUNICORN_THREADS": str(gunicorn_threads(spec, env)),
        "PROMETHEUS_MULTIPROC_DIR": str(_fresh_metrics_dir(spec.name)),
    }
    supervisor.start(spec.name, gunicorn_command(spec), service_env)
    for worker_name, command in spec.workers.items():
        supervisor.start(worker_name, command, env)


def _start_local_sqs(supervisor: Supervisor, env: dict[str, str]) -> None:
    python = sqs.ensure_localstack(VAR / "localstack-venv")
    supervisor.start(
        "sqs",
        sqs.localstack_command(python),
        sqs.localstack_environment(SQS_HOST, SQS_PORT, VAR / "localstack"),
    )
    sqs.wait_until_ready(env["SQS_ENDPOINT_URL"])
    sqs.create_queues(env["SQS_ENDPOINT_URL"])


def _fresh_metrics_dir(service: str) -> Path:
    directory = VAR / "metrics" / service
    shutil.rmtree(directory, ignore_errors=True)
    directory.mkdir(parents=True)
    return directory


def banner(services: list[ServiceSpec], env: dict[str, str]) -> str:
    lines = ["", "Shop is running:"]
    for spec in services:
        lines.append(f"  {spec.name:<16} {spec.url}   docs {spec.url}/docs")
    lines += [
        f"  SQS endpoint     {env['SQS_ENDPOINT_URL']}   (queues {sqs.QUEUE_NAME}, "
        f"{sqs.DEAD_LETTER_QUEUE_NAME})",
        f"  admin login      {env.get('ADMIN_USERNAME')} / {env.get('ADMIN_PASSWORD')}"
        f"   (kept in {VAR / 'credentials.env'})",
        "  next             make demo            (in another terminal: the whole flow, narrated)",
        "                   .venv/bin/shopctl events tail   (watch order-events)",
        "  stop             Ctrl-C",
        "",
    ]
    return "\n".join(lines)
