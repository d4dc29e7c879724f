"""The benchmark's arithmetic: percentiles, slices of a load and the results table."""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime
from typing import Any

import pytest
from prometheus_client import CollectorRegistry, Histogram, generate_latest

from bench.__main__ import parse_arguments
from bench.events import expiry_lags_ms
from bench.load import LoadResult
from bench.report import (
    batch_line,
    batch_totals,
    cpu_breakdown,
    latency_summary,
    mean_batch_sizes,
    percentile,
    table,
)


@pytest.mark.parametrize(
    ("values", "fraction", "expected"),
    [
        ([], 0.5, 0.0),
        ([7.0], 0.99, 7.0),
        ([1.0, 2.0], 0.5, 1.0),
        ([3.0, 1.0, 2.0, 4.0], 0.5, 2.0),
        ([float(v) for v in range(1, 101)], 0.99, 99.0),
        ([float(v) for v in range(1, 101)], 1.0, 100.0),
    ],
)
def test_percentile_is_nearest_rank(values, fraction, expected):
    assert percentile(values, fraction) == expected


def test_latency_summary_names_the_percentiles():
    summary = latency_summary([10.0] * 98 + [50.0, 500.0])
    assert summary == {"p50_ms": 10.0, "p95_ms": 10.0, "p99_ms": 50.0, "mean_ms": 15.3}


def test_table_lists_every_status_but_201_as_an_error():
    run = {
        "concurrency": 32,
        "orders_per_s": 512.3,
        "p50_ms": 40.0,
        "p95_ms": 80.0,
        "p99_ms": 120.0,
        "cpu_ms_per_order": 3.5,
        "relay_lag_p50_ms": 40,
        "relay_lag_p99_ms": 300,
        "expiry_lag_p50_ms": 600,
        "expiry_lag_p99_ms": 1100,
        "db_limit_orders_per_s": 1300.0,
        "ratio_to_db_limit": 0.394,
        "status_counts": {"201": 100, "409": 3, "503": 1},
    }
    lines = table([run]).splitlines()
    assert lines[0].startswith("| conc | orders/s |")
    assert lines[2] == (
        "| 32 | 512 | 40.0 | 80.0 | 120.0 | 3.50 | 40 | 300 | 600 | 1100 | 1300 | 0.39 "
        "| 409 x3, 503 x1 |"
    )


def test_the_cpu_breakdown_names_each_process_group_largest_first():
    run = {"concurrency": 8, "cpu_ms_per_order_by_process": {"database": 1.2, "order": 3.456}}
    assert cpu_breakdown(run) == "CPU ms/order at 8: order 3.46, database 1.20"


def test_the_cpu_breakdown_ends_with_the_bare_sql_cost_when_measured():
    run = {
        "concurrency": 32,
        "cpu_ms_per_order_by_process": {"order": 3.0},
        "db_limit_cpu_ms_per_order": 4.567,
    }
    assert cpu_breakdown(run) == (
        "CPU ms/order at 32: order 3.00 (the database limit's bare SQL: 4.57)"
    )


def test_slices_of_a_load_add_up_to_one_result():
    first = LoadResult(32, 10.0, [5.0, 7.0], Counter({"201": 2}), Counter({"pay 200": 1}))
    second = LoadResult(32, 10.0, [9.0], Counter({"201": 1, "409": 1}), Counter({"pay 200": 1}))
    first.add(second)
    assert first.latencies_ms == [5.0, 7.0, 9.0]
    assert first.orders == 3
    assert first.statuses["409"] == 1
    assert first.follow_up_statuses == Counter({"pay 200": 2})


@pytest.mark.parametrize("argv", [["--slices", "0"], ["--duration", "0"]])
def test_a_level_needs_time_and_at_least_one_slice(argv, capsys):
    with pytest.raises(SystemExit):
        parse_arguments(argv)
    assert "--slices must be at least 1" in capsys.readouterr().err


def test_each_level_takes_three_slices_unless_told():
    assert parse_arguments([]).slices == 3
    assert parse_arguments(["--slices", "1"]).slices == 1


def metrics_page(observations: dict[str, list[int]]) -> str:
    """A real /metrics page with the service's batch histogram, as prometheus_client writes it."""
    registry = CollectorRegistry()
    sizes = Histogram("shop_batch_size", "Calls sent together.", ["batch"], registry=registry)
    for name, batches in observations.items():
        for size in batches:
            sizes.labels(name).observe(size)
    return generate_latest(registry).decode()


def test_batch_sizes_are_calls_per_batch_between_two_readings():
    before = batch_totals(metrics_page({"reservations": [1, 3], "orders": [2]}))
    after = batch_totals(metrics_page({"reservations": [1, 3, 4, 6], "orders": [2]}))
    assert before == {"reservations": (4.0, 2.0), "orders": (2.0, 1.0)}
    # Orders sent no batch in between, so it has no mean; reservations sent two of 10 calls.
    assert mean_batch_sizes(before, after) == {"reservations": 5.0}
    assert batch_line({"concurrency": 32, "mean_batch_size": {"reservations": 5.0}}) == (
        "calls per batch at 32: reservations 5.00"
    )


def test_the_expiry_lag_runs_from_the_created_events_expires_at_to_the_cancel_on_the_queue():
    due = datetime(2026, 1, 1, 12, 0, 0, tzinfo=UTC).timestamp()
    events: list[dict[str, Any]] = [
        {
            "eventId": "c1",
            "eventType": "order_created",
            "orderId": "o1",
            "expiresAt": "2026-01-01T12:00:00Z",
        },
        {
            "eventId": "x1",
            "eventType": "order_cancelled",
            "orderId": "o1",
            "reason": "payment_timeout",
            "expiresAt": None,
        },
        # Cancelled by its customer: no expiry lag.
        {
            "eventId": "c2",
            "eventType": "order_created",
            "orderId": "o2",
            "expiresAt": "2026-01-01T12:00:00Z",
        },
        {"eventId": "x2", "eventType": "order_cancelled", "orderId": "o2", "reason": "customer"},
        # Due outside the window asked about.
        {
            "eventId": "c3",
            "eventType": "order_created",
            "orderId": "o3",
            "expiresAt": "2026-01-01T13:00:00Z",
        },
        {
            "eventId": "x3",
            "eventType": "order_cancelled",
            "orderId": "o3",
            "reason": "payment_timeout",
        },
    ]
    queued_at = {"x1": due + 0.75, "x2": due + 0.1, "x3": due + 3600.2}
    assert expiry_lags_ms(events, queued_at, due - 1, due + 60) == [750.0]
