"""Code run as the order service's gevent worker runs it: in an interpreter of its own whose
standard library gevent has patched, so the patching never leaks into the test session."""

from __future__ import annotations

import textwrap

from tests.support.interpreter import run_script

_PATCH_FIRST = "from gevent import monkey\n\nmonkey.patch_all()\n\n"


def run_patched(script: str, *args: str, timeout_s: float = 20) -> str:
    """Runs `script` (indented as you like) after gevent's monkey-patching; returns what it
    printed, and fails the test if it failed."""
    return run_script(_PATCH_FIRST + textwrap.dedent(script), *args, timeout_s=timeout_s)
