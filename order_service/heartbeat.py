"""The relay's liveness: the worker touches a file while its relay threads keep looping, and
`python -m order_service.heartbeat` (a container's liveness probe) says whether it is fresh.

Kept free of the service's imports, so the probe starts in milliseconds and little memory.
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

HEARTBEAT_FILE_ENV = "WORKER_HEARTBEAT_FILE"
DEFAULT_HEARTBEAT_FILE = "/tmp/shop-order-worker.heartbeat"  # noqa: S108 - a private tmpfs in pods
# Longer than a relay loop can take while SQS or the database is down (timeouts plus the
# longest backoff), so an outage is not mistaken for a wedged process.
MAX_AGE_S = 60.0


def heartbeat_path() -> Path:
    return Path(os.environ.get(HEARTBEAT_FILE_ENV, DEFAULT_HEARTBEAT_FILE))


def beat(path: Path) -> None:
    path.touch()


def is_fresh(path: Path, *, max_age_s: float = MAX_AGE_S) -> bool:
    try:
        return time.time() - path.stat().st_mtime <= max_age_s
    except OSError:
        return False


def main() -> int:
    path = heartbeat_path()
    if is_fresh(path):
        return 0
    print(f"order worker heartbeat {path} is missing or older than {MAX_AGE_S:.0f} s")
    return 1


if __name__ == "__main__":
    sys.exit(main())
