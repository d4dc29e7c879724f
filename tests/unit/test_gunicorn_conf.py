"""The gunicorn settings every service runs with, read the way gunicorn reads them."""

from __future__ import annotations

from tests.support.interpreter import run_script

# In an interpreter of its own: the settings module sets the metrics directory and replaces
# gunicorn's error writer on import, which must not leak into the test session.
_FROZEN_AFTER_WORKER_INIT = """
import gc

from gunicorn.app.base import Application


class Settings(Application):
    def load_config(self):
        self.load_config_from_module_name_or_filename("python:common.gunicorn_conf")

    def load(self):
        raise AssertionError("not served")


settings = Settings()
print(gc.get_freeze_count())
settings.cfg.post_worker_init(None)
print(gc.get_freeze_count())
"""


def test_a_worker_freezes_what_it_loaded_so_full_collections_skip_it():
    before, after = (int(count) for count in run_script(_FROZEN_AFTER_WORKER_INIT).split())
    assert before == 0
    assert after > 10_000
