"""The k8s user service's memory limit fits the most argon2 hashing it can do at once."""

from __future__ import annotations

import re

import pytest
import yaml

from tests.deploy.test_files import K8S, _base, _container
from user_service.settings import UserSettings

pytestmark = pytest.mark.deploy

MIB = 1024 * 1024
# Measured on gunicorn 2 x 8 threads (see the comment at the limit in deployment.yaml): the
# arbiter ~25 MB, each worker ~75 MB idle. Rounded up.
ARBITER_MIB, WORKER_IDLE_MIB = 32, 96
UNITS = {"Ki": 1024, "Mi": MIB, "Gi": 1024 * MIB}


def _config_literals() -> dict[str, str]:
    kustomization = yaml.safe_load(
        (K8S / "base" / "user-service" / "kustomization.yaml").read_text()
    )
    (generator,) = [
        g for g in kustomization["configMapGenerator"] if g["name"] == "user-service-config"
    ]
    return dict(literal.split("=", 1) for literal in generator["literals"])


def _bytes(quantity: str) -> int:
    match = re.fullmatch(r"(\d+)(Ki|Mi|Gi)", quantity)
    assert match, f"unexpected quantity {quantity!r}"
    return int(match[1]) * UNITS[match[2]]


def test_the_memory_limit_holds_every_hash_the_pod_may_run_at_once():
    config = _config_literals()
    settings = UserSettings.model_validate(
        {
            key.lower(): value
            for key, value in config.items()
            if key.lower() in UserSettings.model_fields
        }
    )
    workers = int(config["WEB_CONCURRENCY"])
    turns = settings.argon2_max_concurrent_hashes + settings.argon2_reserved_hashes
    hashing = workers * turns * settings.argon2_memory_kib * 1024
    most = ARBITER_MIB * MIB + workers * WORKER_IDLE_MIB * MIB + hashing
    limit = _bytes(_container(_base("Deployment")["user-service"])["resources"]["limits"]["memory"])
    # Headroom for fragmentation and the odd large response: at most three quarters of it.
    assert most <= limit * 3 // 4, (most // MIB, limit // MIB)
    # Without the bound, every thread of every worker could hash at once.
    unbounded = workers * int(config["GUNICORN_THREADS"]) * settings.argon2_memory_kib * 1024
    assert most - hashing + unbounded > limit, "then the bound is what keeps the pod alive"
