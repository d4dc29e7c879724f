"""Code run in an interpreter of its own, from the repository's root, for what must not leak
into the test session (gevent's patching, a module's changes to the environment on import)."""

from __future__ import annotations

import subprocess
import sys
import textwrap

from tests.support.dockerfiles import REPOSITORY


def run_script(script: str, *args: str, timeout_s: float = 20) -> str:
    """Runs `script` (indented as you like); returns what it printed, and fails the test if it
    failed."""
    done = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(script), *args],
        capture_output=True,
        text=True,
        timeout=timeout_s,
        cwd=REPOSITORY,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout
