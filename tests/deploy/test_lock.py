"""deploy/requirements.txt, which the images install, must be pyproject.toml's runtime closure."""

from __future__ import annotations

import importlib.metadata
import tomllib

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from tests.support.dockerfiles import REPOSITORY

pytestmark = pytest.mark.deploy

REGENERATE = "out of date: run `make lock` (deploy/lock.py) and commit deploy/requirements.txt"


def _lock() -> dict[str, str]:
    pins: dict[str, str] = {}
    for line in (REPOSITORY / "deploy" / "requirements.txt").read_text().splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            name, _, version = line.partition("==")
            assert version, f"unpinned line in the lock: {line!r}"
            pins[canonicalize_name(name)] = version
    return pins


def _runtime_requirements() -> list[Requirement]:
    with (REPOSITORY / "pyproject.toml").open("rb") as file:
        return [Requirement(r) for r in tomllib.load(file)["project"]["dependencies"]]


def test_every_runtime_dependency_is_locked_at_its_pinned_version():
    lock = _lock()
    for requirement in _runtime_requirements():
        pinned = [s.version for s in requirement.specifier if s.operator == "=="]
        assert pinned, f"{requirement} is not pinned exactly in pyproject.toml"
        name = canonicalize_name(requirement.name)
        assert lock.get(name) == pinned[0], f"{name}: lock has {lock.get(name)}; {REGENERATE}"


def test_lock_is_exactly_the_runtime_closure():
    """Walks the installed dependencies' metadata from pyproject's runtime requirements: the
    set reached must be the lock's, at the lock's versions (so the tests ran what ships)."""
    lock = _lock()
    reached: dict[str, str] = {}
    walked: set[tuple[str, str]] = set()
    pending = list(_runtime_requirements())
    while pending:
        requirement = pending.pop()
        name = canonicalize_name(requirement.name)
        # A distribution's own requirements, and those of each extra asked of it.
        extras = {""} | requirement.extras
        if {(name, extra) for extra in extras} <= walked:
            continue
        walked |= {(name, extra) for extra in extras}
        try:
            distribution = importlib.metadata.distribution(name)
        except importlib.metadata.PackageNotFoundError:
            pytest.fail(f"{name} is required but not installed: run `make install`")
        reached[name] = distribution.version
        for line in distribution.requires or []:
            child = Requirement(line)
            if child.marker is None or any(
                child.marker.evaluate({"extra": extra}) for extra in extras
            ):
                pending.append(child)
    assert set(reached) == set(lock), (
        f"missing from the lock: {sorted(set(reached) - set(lock))}, "
        f"not needed: {sorted(set(lock) - set(reached))}; {REGENERATE}"
    )
    differ = {n: (lock[n], v) for n, v in reached.items() if lock[n] != v}
    assert not differ, f"(lock, installed) differ: {differ}; {REGENERATE}, then `make install`"
