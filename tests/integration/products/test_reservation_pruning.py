"""Released reservation lines, and release markers, are pruned by age; held ones never."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import timedelta
from decimal import Decimal

import pytest
import sqlalchemy as sa

from common.db import Database, utcnow
from common.ids import new_id
from product_service.repository import reservations
from product_service.reservation_pruning import prune_released_reservations
from product_service.service import ProductFields, ProductService


@pytest.fixture
def product_db(product_db_url) -> Iterator[Database]:
    db = Database.from_url(product_db_url, pool_size=2)
    yield db
    db.dispose()


def age(db: Database, reservation_id: str, by: timedelta) -> None:
    with db.transaction() as connection:
        connection.execute(
            reservations.update()
            .where(reservations.c.reservation_id == reservation_id)
            .values(updated_at=utcnow() - by)
        )


def lines_of(db: Database, *reservation_ids: str) -> dict[str, list[str]]:
    with db.transaction() as connection:
        rows = connection.execute(
            sa.select(reservations.c.reservation_id, reservations.c.state).where(
                reservations.c.reservation_id.in_(reservation_ids)
            )
        )
        found: dict[str, list[str]] = {}
        for row in rows:
            found.setdefault(row.reservation_id, []).append(row.state)
    return found


def test_old_released_lines_and_markers_go_and_held_ones_stay(product_db):
    products = ProductService(product_db)
    product = products.create_product(ProductFields("Pruned", "", Decimal("1.00"), 10)).id
    released_long_ago, marker_only, held_long_ago, released_just_now = (new_id() for _ in "1234")
    products.reserve_items(released_long_ago, [(product, 2)])
    products.release_reservation(released_long_ago)
    products.release_reservation(marker_only)  # its reservation never came: only a marker
    products.reserve_items(held_long_ago, [(product, 1)])
    products.reserve_items(released_just_now, [(product, 3)])
    products.release_reservation(released_just_now)
    for reservation_id in (released_long_ago, marker_only, held_long_ago):
        age(product_db, reservation_id, timedelta(days=8))

    # Slices of one line: each its own short transaction, until no old line is left.
    pruned = prune_released_reservations(product_db, retention=timedelta(days=7), slice_size=1)

    assert pruned >= 3
    left = lines_of(product_db, released_long_ago, marker_only, held_long_ago, released_just_now)
    assert set(left) == {held_long_ago, released_just_now}
    assert left[held_long_ago] == ["held", "held"]
    assert products.get_product(product).stock == 9


def test_the_command_prunes_what_its_settings_say(product_db, product_db_url):
    products = ProductService(product_db)
    old = new_id()
    products.release_reservation(old)
    age(product_db, old, timedelta(hours=3))

    done = subprocess.run(
        [sys.executable, "-m", "product_service", "prune-reservations"],
        env={
            **os.environ,
            "PRODUCT_DATABASE_URL": product_db_url,
            "RELEASED_RESERVATION_RETENTION_HOURS": "2",
        },
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    assert "released reservation line(s) pruned" in done.stdout
    assert lines_of(product_db, old) == {}


def pruner(url: str, every_s: str = "1") -> subprocess.Popen[str]:
    """`prune-reservations --every`, as `make run` and compose run it."""
    return subprocess.Popen(
        [sys.executable, "-m", "product_service", "prune-reservations", "--every", every_s],
        env={
            **os.environ,
            "PRODUCT_DATABASE_URL": url,
            "RELEASED_RESERVATION_RETENTION_HOURS": "2",
            "PYTHONUNBUFFERED": "1",
        },
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def lines_until(process: subprocess.Popen[str], wanted: str, count: int) -> list[str]:
    """The process's output up to its `count`-th line holding `wanted` (within a deadline)."""
    assert process.stdout is not None
    seen: list[str] = []
    deadline = time.monotonic() + 60
    while sum(wanted in line for line in seen) < count:
        assert time.monotonic() < deadline, seen
        line = process.stdout.readline()
        assert line, f"the pruner exited: {seen}"
        seen.append(line)
    return seen


def test_the_command_keeps_pruning_every_round(product_db, product_db_url):
    products = ProductService(product_db)
    first, second = new_id(), new_id()
    products.release_reservation(first)
    age(product_db, first, timedelta(hours=3))
    process = pruner(product_db_url)
    try:
        lines_until(process, "released reservation line(s) pruned", 1)
        assert lines_of(product_db, first) == {}
        # Released after the first round: only a later round of the same process prunes it.
        products.release_reservation(second)
        age(product_db, second, timedelta(hours=3))
        deadline = time.monotonic() + 60
        while lines_of(product_db, second):
            assert time.monotonic() < deadline, "no later round pruned it"
            time.sleep(0.2)
    finally:
        process.terminate()
        process.wait(timeout=10)


def test_a_failed_round_does_not_stop_the_next():
    process = pruner("mysql+pymysql://root@127.0.0.1:9/nowhere")  # nothing listens there
    try:
        failures = lines_until(process, '"upkeep_failed"', 2)
        assert process.poll() is None
        reported = [json.loads(line) for line in failures if '"upkeep_failed"' in line]
        assert [entry["step"] for entry in reported] == ["prune_reservations"] * 2
    finally:
        process.terminate()
        process.wait(timeout=10)
