"""Pruning released reservations, run by `python -m product_service prune-reservations`.

A release leaves its lines behind as `released` (and a release that came before its
reservation leaves a marker), so a late retry of that reservation is refused rather than
taking stock nobody will give back. Such a retry comes within a request's timeouts, seconds
after; kept for days, the lines are then only growth. The product service has no worker of
its own, so the command runs on a schedule (the k8s CronJob `product-service-prune`): each
run deletes in slices of short transactions, a bounded number of them.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta

from common.db import Database, utcnow
from common.pruning import delete_before
from product_service.repository import ReservationRepository


def prune_released_reservations(
    db: Database,
    *,
    retention: timedelta,
    slice_size: int = 1000,
    clock: Callable[[], datetime] = utcnow,
) -> int:
    """Deletes released reservation lines older than `retention`; returns how many."""
    return delete_before(
        db,
        ReservationRepository,
        ReservationRepository.delete_released_before,
        clock() - retention,
        slice_size=slice_size,
    )
