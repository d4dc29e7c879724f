"""The worker's upkeep: failed attempts pruned by age, and each step isolated from the others."""

from __future__ import annotations

import time
from datetime import timedelta

import sqlalchemy as sa
from structlog.testing import capture_logs

from common.db import utcnow
from common.ids import new_id
from order_service.attempt_journal import COMPLETED, FAILED
from order_service.settings import OrderSettings
from order_service.tables import order_attempts
from order_service.worker import Worker
from tests.integration.orders.conftest import CUSTOMER

NOWHERE = "http://127.0.0.1:9"


def journalled(order_db, state: str, age: timedelta) -> str:
    attempt_id = new_id()
    created_at = utcnow() - age
    with order_db.transaction() as connection:
        connection.execute(
            sa.insert(order_attempts).values(
                id=attempt_id,
                user_id=CUSTOMER.user_id,
                orderer_id=CUSTOMER.user_id,
                idempotency_key=f"upkeep-{attempt_id}",
                request_hash="0" * 64,
                state=state,
                order_id=new_id() if state == COMPLETED else None,
                created_at=created_at,
                updated_at=created_at,
            )
        )
    return attempt_id


def still_there(order_db, *attempt_ids: str) -> set[str]:
    with order_db.transaction() as connection:
        rows = connection.execute(
            sa.select(order_attempts.c.id).where(order_attempts.c.id.in_(attempt_ids))
        )
        return {row.id for row in rows}


def test_failed_attempts_are_pruned_by_age_and_nothing_else(orders, order_db):
    old_failed = [journalled(order_db, FAILED, timedelta(days=8)) for _ in range(3)]
    recent_failed = journalled(order_db, FAILED, timedelta(hours=1))
    old_completed = journalled(order_db, COMPLETED, timedelta(days=30))

    # Slices of one: every slice its own transaction, until none is left.
    assert orders.prune_failed_attempts(retention=timedelta(days=7), slice_size=1) >= 3
    assert still_there(order_db, *old_failed, recent_failed, old_completed) == {
        recent_failed,
        old_completed,
    }


def test_a_failing_upkeep_step_never_keeps_the_others_from_running(order_db, monkeypatch):
    settings = OrderSettings.model_validate(
        {
            "database_url": order_db.engine.url.render_as_string(hide_password=False),
            "sqs_endpoint_url": NOWHERE,
        }
    )
    worker = Worker(settings)

    def repair_fails(**_: object) -> int:
        raise RuntimeError("the product service is down")

    monkeypatch.setattr(worker._orders, "repair_attempts", repair_fails)
    old_failed = journalled(order_db, FAILED, timedelta(days=30))

    with capture_logs() as logs:
        worker.run_upkeep_due(time.monotonic())

    assert still_there(order_db, old_failed) == set()
    failures = [log["step"] for log in logs if log["event"] == "upkeep_failed"]
    assert "repair_attempts" in failures
