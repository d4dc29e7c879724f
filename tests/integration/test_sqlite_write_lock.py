"""`make run`'s SQLite under the order service's gevent worker: a transaction waiting for the
write lock must let the lock's holder run, or the whole process stalls until SQLite gives up."""

from __future__ import annotations

from pathlib import Path

from tests.support.greenlets import run_patched

_SCRIPT = """
    import sys
    import time

    import gevent
    import sqlalchemy as sa

    from common.db import create_db_engine

    engine = create_db_engine(f"sqlite:///{sys.argv[1]}")
    with engine.begin() as connection:
        connection.execute(sa.text("CREATE TABLE t (n INTEGER)"))

    def holder():
        with engine.begin() as connection:
            connection.execute(sa.text("INSERT INTO t VALUES (1)"))
            gevent.sleep(0.3)  # the lock held across I/O, like a cancel calling a release

    def waiter():
        gevent.sleep(0.05)
        started = time.monotonic()
        with engine.begin() as connection:
            count = connection.execute(sa.text("SELECT COUNT(*) FROM t")).scalar_one()
        print(count, round(time.monotonic() - started, 2))

    gevent.joinall([gevent.spawn(holder), gevent.spawn(waiter)], raise_error=True)
"""


def test_a_greenlet_waiting_for_the_write_lock_lets_its_holder_finish(tmp_path: Path):
    count, waited_s = run_patched(_SCRIPT, str(tmp_path / "shop.db")).split()
    assert count == "1"  # it ran after the holder committed
    assert float(waited_s) < 5
