"""Figures of one benchmark run: percentiles, the results table and the JSON file."""

from __future__ import annotations

import json
import math
import platform
import statistics
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psutil
from prometheus_client.parser import text_string_to_metric_families

_BATCH_METRIC = "shop_batch_size"


def percentile(values: list[float], fraction: float) -> float:
    """Nearest-rank percentile; 0.0 for no values so an empty run still reports."""
    if not values:
        return 0.0
    ordered = sorted(values)
    rank = max(0, min(len(ordered) - 1, math.ceil(fraction * len(ordered)) - 1))
    return ordered[rank]


def latency_summary(values_ms: list[float]) -> dict[str, float]:
    return {
        "p50_ms": round(percentile(values_ms, 0.50), 1),
        "p95_ms": round(percentile(values_ms, 0.95), 1),
        "p99_ms": round(percentile(values_ms, 0.99), 1),
        "mean_ms": round(statistics.fmean(values_ms), 1) if values_ms else 0.0,
    }


def machine() -> dict[str, Any]:
    return {
        "cpus": psutil.cpu_count(),
        "memory_gib": round(psutil.virtual_memory().total / 2**30),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "processor": platform.processor() or platform.machine(),
    }


def write_results(directory: Path, document: dict[str, Any]) -> Path:
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    path = directory / f"bench-{stamp}.json"
    text = json.dumps(document, indent=2, sort_keys=False) + "\n"
    path.write_text(text)
    (directory / "latest.json").write_text(text)
    return path


COLUMNS = [
    ("concurrency", "conc", "{:d}"),
    ("orders_per_s", "orders/s", "{:.0f}"),
    ("p50_ms", "p50 ms", "{:.1f}"),
    ("p95_ms", "p95 ms", "{:.1f}"),
    ("p99_ms", "p99 ms", "{:.1f}"),
    ("cpu_ms_per_order", "CPU ms/order", "{:.2f}"),
    ("relay_lag_p50_ms", "relay p50 ms", "{:.0f}"),
    ("relay_lag_p99_ms", "relay p99 ms", "{:.0f}"),
    ("expiry_lag_p50_ms", "expiry p50 ms", "{:.0f}"),
    ("expiry_lag_p99_ms", "expiry p99 ms", "{:.0f}"),
    ("db_limit_orders_per_s", "DB limit/s", "{:.0f}"),
    ("ratio_to_db_limit", "ratio", "{:.2f}"),
]


def table(runs: list[dict[str, Any]]) -> str:
    """A Markdown table, so the same text goes to the terminal and the README."""
    header = "| " + " | ".join(title for _, title, _ in COLUMNS) + " | errors |"
    rule = "|" + "|".join("---:" for _ in range(len(COLUMNS) + 1)) + "|"
    rows = [
        "| "
        + " | ".join(form.format(run[key]) for key, _, form in COLUMNS)
        + f" | {_errors(run['status_counts'])} |"
        for run in runs
    ]
    return "\n".join([header, rule, *rows])


def _errors(status_counts: dict[str, int]) -> str:
    errors = {status: n for status, n in status_counts.items() if status != "201"}
    return ", ".join(f"{status} x{n}" for status, n in sorted(errors.items())) or "none"


def cpu_breakdown(run: dict[str, Any]) -> str:
    """One line per level: CPU milliseconds per order of each process group, largest first,
    then what the database limit's bare SQL took per order, where it was measured."""
    shares = sorted(run["cpu_ms_per_order_by_process"].items(), key=lambda item: -item[1])
    line = f"CPU ms/order at {run['concurrency']}: " + ", ".join(
        f"{name} {ms:.2f}" for name, ms in shares
    )
    if "db_limit_cpu_ms_per_order" in run:
        line += f" (the database limit's bare SQL: {run['db_limit_cpu_ms_per_order']:.2f})"
    return line


def batch_totals(metrics_text: str) -> dict[str, tuple[float, float]]:
    """Each batcher's (calls, batches) so far, from a service's /metrics page."""
    totals: dict[str, list[float]] = {}
    for family in text_string_to_metric_families(metrics_text):
        if family.name != _BATCH_METRIC:
            continue
        for sample in family.samples:
            kind = {"_sum": 0, "_count": 1}.get(sample.name.removeprefix(_BATCH_METRIC))
            if kind is not None:
                totals.setdefault(sample.labels["batch"], [0.0, 0.0])[kind] += sample.value
    return {name: (calls, batches) for name, (calls, batches) in totals.items()}


def mean_batch_sizes(
    before: dict[str, tuple[float, float]], after: dict[str, tuple[float, float]]
) -> dict[str, float]:
    """Calls per batch of each batcher between two readings of `batch_totals`."""
    sizes = {}
    for name, (calls, batches) in after.items():
        calls_before, batches_before = before.get(name, (0.0, 0.0))
        if batches > batches_before:
            sizes[name] = round((calls - calls_before) / (batches - batches_before), 2)
    return sizes


def batch_line(run: dict[str, Any]) -> str:
    sizes = run.get("mean_batch_size") or {}
    return f"calls per batch at {run['concurrency']}: " + (
        ", ".join(f"{name} {size:.2f}" for name, size in sorted(sizes.items())) or "none"
    )
