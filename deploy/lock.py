"""Writes deploy/requirements.txt: pyproject's runtime dependencies and everything they pull in.

`make lock` runs this after a change to `[project] dependencies`; the images install exactly
this file, and tests/deploy fails while it and pyproject.toml disagree. The resolution is
pip's own (`pip install --dry-run --report`) for the interpreter that runs this script, which
should be the images' Python (3.11 on Linux), so environment markers resolve the same way.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
LOCK = ROOT / "deploy" / "requirements.txt"
HEADER = """\
# Runtime dependencies of the service images, resolved from pyproject.toml's
# [project] dependencies by `make lock` (deploy/lock.py) for CPython {python} on Linux.
# Do not edit by hand: tests/deploy fails when this file and pyproject.toml disagree.
"""


def runtime_dependencies() -> list[str]:
    with (ROOT / "pyproject.toml").open("rb") as file:
        return list(tomllib.load(file)["project"]["dependencies"])


def resolve(requirements: list[str]) -> dict[str, str]:
    """{distribution name: version} of everything pip would install for `requirements`."""
    with tempfile.TemporaryDirectory() as scratch:
        report = Path(scratch) / "report.json"
        subprocess.run(
            [
                sys.executable,
                "-m",
                "pip",
                "install",
                "--dry-run",
                "--ignore-installed",
                "--quiet",
                "--disable-pip-version-check",
                "--report",
                str(report),
                *requirements,
            ],
            check=True,
        )
        installs = json.loads(report.read_text())["install"]
    return {item["metadata"]["name"]: item["metadata"]["version"] for item in installs}


def render(pins: dict[str, str]) -> str:
    python = f"{sys.version_info.major}.{sys.version_info.minor}"
    lines = [f"{name}=={version}" for name, version in sorted(pins.items(), key=_sort_key)]
    return HEADER.format(python=python) + "\n".join(lines) + "\n"


def _sort_key(item: tuple[str, str]) -> str:
    return item[0].lower().replace("_", "-")


def main() -> int:
    LOCK.write_text(render(resolve(runtime_dependencies())))
    print(f"wrote {LOCK.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
