from __future__ import annotations

import os

import pytest


@pytest.fixture(scope="session")
def image_layers(tmp_path_factory):
    """Replayed image layers, shared by this run's xdist workers (their temp dirs' parent)."""
    base = tmp_path_factory.getbasetemp()
    shared = base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base
    return shared / "image-layers"
