"""Where the services, the queue and the admin account are: environment first, then `make run`'s."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from common.config import read_secret_file

CREDENTIALS_FILE = Path("var") / "credentials.env"
COMPOSE_ENV_FILE = Path(".env")
LOCAL_SQS_ENDPOINT = "http://127.0.0.1:4566"
QUEUE_NAME = "order-events"
DEAD_LETTER_QUEUE_NAME = "order-events-dlq"
# LocalStack accepts any credentials; these are its documented dummies, not secrets.
LOCAL_CREDENTIALS = {
    "AWS_ACCESS_KEY_ID": "test",
    "AWS_SECRET_ACCESS_KEY": "test",
    "AWS_DEFAULT_REGION": "us-east-1",
}


@dataclass(frozen=True)
class Endpoints:
    user: str
    product: str
    order: str

    @classmethod
    def from_environment(cls) -> Endpoints:
        return cls(
            user=_base_url("USER_SERVICE_URL", "http://127.0.0.1:8082"),
            product=_base_url("PRODUCT_SERVICE_URL", "http://127.0.0.1:8081"),
            order=_base_url("ORDER_SERVICE_URL", "http://127.0.0.1:8080"),
        )


@dataclass(frozen=True)
class QueueSettings:
    endpoint: str
    queue: str
    dead_letter_queue: str

    @classmethod
    def from_environment(cls, endpoint: str | None = None) -> QueueSettings:
        return cls(
            # A developer's tool: unset means `make run`'s LocalStack. For AWS itself, give its
            # regional endpoint, e.g. https://sqs.eu-west-1.amazonaws.com.
            endpoint=endpoint or os.environ.get("SQS_ENDPOINT_URL") or LOCAL_SQS_ENDPOINT,
            queue=os.environ.get("ORDER_EVENTS_QUEUE", QUEUE_NAME),
            dead_letter_queue=os.environ.get(
                "ORDER_EVENTS_DLQ", f"{os.environ.get('ORDER_EVENTS_QUEUE', QUEUE_NAME)}-dlq"
            ),
        )


def _base_url(variable: str, default: str) -> str:
    return (os.environ.get(variable) or default).rstrip("/")


def admin_credentials(
    files: tuple[Path, ...] = (CREDENTIALS_FILE, COMPOSE_ENV_FILE),
) -> tuple[str, str] | None:
    """ADMIN_USERNAME/ADMIN_PASSWORD (or ADMIN_PASSWORD_FILE, as the user service reads it)
    from the environment, else from the first file that has both: `make run`'s
    var/credentials.env, then docker compose's .env."""
    username = os.environ.get("ADMIN_USERNAME")
    password = os.environ.get("ADMIN_PASSWORD")
    password_file = os.environ.get("ADMIN_PASSWORD_FILE")
    if password_file and not password:
        password = read_secret_file("ADMIN_PASSWORD_FILE", password_file)
    if username and password:
        return username, password
    for path in files:
        saved = read_env_file(path)
        if saved.get("ADMIN_USERNAME") and saved.get("ADMIN_PASSWORD"):
            return saved["ADMIN_USERNAME"], saved["ADMIN_PASSWORD"]
    return None


def read_env_file(path: Path) -> dict[str, str]:
    if not path.is_file():
        return {}
    pairs = (line.split("=", 1) for line in path.read_text().splitlines() if "=" in line)
    return {key.strip(): value.strip() for key, value in pairs if not key.startswith("#")}
