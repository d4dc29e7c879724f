"""`make bench`: the whole system on MySQL under a closed-loop order load, against the DB's limit.

Usage: python -m bench [--duration 30] [--concurrency 8 32] [--mysql-url URL]
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import os
import subprocess
import sys
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psutil
import requests

from bench import consistency, cpu, dblimit, report
from bench.events import EventDrain
from bench.load import LoadResult, closed_loop
from bench.setup import Catalog, create_catalog
from bench.system import PAYMENT_TIMEOUT_S, System, logs_dir, results_dir, start
from devstack.stack import SERVICES, gunicorn_threads, gunicorn_worker_class, gunicorn_workers

# The order service's workers are where an order's time goes; py-spy samples them.
PROFILED_SERVICE = "order_service"
_LOAD_GENERATOR = "load_generator"
_NOT_THE_SYSTEM = {"sqs", _LOAD_GENERATOR}
# Before each measured slice, the load runs this long unmeasured: a little over one payment
# timeout, so the slice starts with orders falling due at the rate they are placed.
PREROLL_S = PAYMENT_TIMEOUT_S + 1.0
# Expiry must have cancelled every unpaid order this long after the load stops, else the run
# fails: it did not keep up.
EXPIRY_DEADLINE_S = PAYMENT_TIMEOUT_S + 60.0


def parse_arguments(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    add_load_arguments(parser, concurrency=[8, 32])
    parser.add_argument("--products", type=int, default=200)
    parser.add_argument("--profile-seconds", type=float, default=15.0, help="0 to skip")
    return checked(parser, parser.parse_args(argv))


def add_load_arguments(parser: argparse.ArgumentParser, *, concurrency: list[int]) -> None:
    """The order load's options, shared by every bench that runs it (bench.scale too)."""
    parser.add_argument("--duration", type=float, default=30.0, help="seconds per level")
    parser.add_argument("--concurrency", type=int, nargs="+", default=concurrency)
    parser.add_argument(
        "--mysql-url",
        default=os.environ.get("BENCH_MYSQL_URL", "mysql+pymysql://root@127.0.0.1:3306"),
        help="server the bench creates its shop_bench_* databases on",
    )
    parser.add_argument(
        "--warmup",
        type=float,
        default=5.0,
        help="seconds of the same load before each level, not measured",
    )
    parser.add_argument(
        "--slices",
        type=int,
        default=3,
        help="each level's time in this many slices of orders, each followed by as long of "
        "the database limit, so both figures of the ratio see the machine at the same time",
    )


def checked(parser: argparse.ArgumentParser, arguments: argparse.Namespace) -> argparse.Namespace:
    if arguments.slices < 1 or arguments.duration <= 0:
        parser.error("--slices must be at least 1 and --duration more than 0")
    return arguments


def main(argv: list[str] | None = None) -> int:
    arguments = parse_arguments(argv)
    directory = results_dir()
    logs = logs_dir()
    with (logs / "devstack.log").open("w") as log:
        system = start(arguments.mysql_url, logs, log, overrides={})
        try:
            catalog = create_catalog(system, products=arguments.products, shoppers=64)
            runs, verdict = measure_levels(system, catalog, arguments)
            profile = (
                profile_order_path(system, catalog, max(arguments.concurrency), arguments)
                if arguments.profile_seconds > 0
                else None
            )
        finally:
            system.stop()
    document = {
        "machine": report.machine(),
        "settings": gunicorn_settings(system),
        "duration_s": arguments.duration,
        "warmup_s": arguments.warmup,
        "slices": arguments.slices,
        "runs": runs,
        "consistency": verdict.as_dict(),
        "profile": profile,
    }
    path = report.write_results(directory, document)
    print_levels(runs, verdict)
    print(f"results: {path}" + (f"; profile: {profile}" if profile else ""))
    return 0 if verdict.consistent else 1


def measure_levels(
    system: System,
    catalog: Catalog,
    arguments: argparse.Namespace,
    scope: consistency.Scope | None = None,
) -> tuple[list[dict[str, Any]], consistency.Verdict]:
    """Each level of `arguments.concurrency` (see measure_level); then, once every order left
    unpaid has expired, whether the books add up (within `scope`, when given)."""
    drain = EventDrain(system.env["SQS_ENDPOINT_URL"])
    # On databases of its own, so the limit's orders never reach the system's figures.
    limit = dblimit.prepare(arguments.mysql_url, len(catalog.product_ids))
    drain.start()
    try:
        runs = [
            measure_level(
                Level(
                    system,
                    catalog,
                    drain,
                    limit,
                    level,
                    consistency.ALL_ORDERS if scope is None else scope.first_order_id,
                ),
                arguments.duration,
                warmup_s=arguments.warmup,
                slices=arguments.slices,
            )
            for level in arguments.concurrency
        ]
        # Every order left unpaid expires before the books are checked, so none changes
        # between reading the orders and reading the stock; and the expiry lags are known.
        consistency.wait_until_expired(
            system.database_urls,
            timeout_s=EXPIRY_DEADLINE_S,
            first_order_id=consistency.ALL_ORDERS if scope is None else scope.first_order_id,
        )
        verdict = consistency.check(system.database_urls, drain, scope)
        for run in runs:
            _add_expiry_lags(run, drain)
            run["consistent"] = verdict.consistent
    finally:
        drain.stop()
    return runs, verdict


def print_levels(runs: list[dict[str, Any]], verdict: consistency.Verdict) -> None:
    print(report.table(runs))
    for run in runs:
        print(report.cpu_breakdown(run))
        print(report.batch_line(run))
    print(f"consistent: {verdict.consistent} ({verdict.summary()})")


@dataclass(frozen=True)
class Level:
    """One concurrency level: the running system and its catalog, the event consumer, and the
    databases the limit runs on."""

    system: System
    catalog: Catalog
    drain: EventDrain
    limit: dblimit.DatabaseLimit
    concurrency: int
    # The orders the bench placed: from this id on (the scale bench's databases hold others,
    # some PENDING for days, which no wait for expiry should count).
    first_order_id: str = consistency.ALL_ORDERS


def measure_level(
    level: Level, duration_s: float, *, warmup_s: float, slices: int
) -> dict[str, Any]:
    system, concurrency = level.system, level.concurrency
    print(
        f"bench: concurrency {concurrency}, {duration_s:.0f}s of orders in {slices} slices, "
        "each followed by as long of the database limit",
        flush=True,
    )
    # Steady state only: the first orders of a level also pay for each worker's first service
    # login (an argon2 hash), its user lookups and its pooled connections.
    if warmup_s > 0:
        _order_load(system, level.catalog, concurrency, warmup_s)
    groups = _process_groups(system)
    batches_before = _batch_totals(system)
    slice_s = duration_s / slices
    load = LoadResult(concurrency, duration_s)
    cpu_used_s: Counter[str] = Counter()
    elapsed = limit_orders = limit_cpu_s = 0.0
    due_windows: list[tuple[float, float]] = []
    # This machine's speed drifts by tens of per cent over minutes; taking the system and the
    # limit in turns keeps that drift out of their ratio.
    for _ in range(slices):
        # The same load, unmeasured, for one payment timeout first: its unpaid orders fall due
        # during the slice, so the slice measures placing and expiring together at their
        # steady state, as a shop under constant load runs them, not placing alone.
        _order_load(system, level.catalog, concurrency, PREROLL_S)
        due_from = time.time()
        # The events consumer stands in for downstream services on machines of their own:
        # while the slice is measured, the queue keeps its events and it takes no CPU here.
        with level.drain.paused():
            slice_load, slice_elapsed, slice_cpu_s = _system_slice(level, groups, slice_s)
        due_windows.append((due_from, time.time()))
        load.add(slice_load)
        elapsed += slice_elapsed
        cpu_used_s.update(slice_cpu_s)
        # The system is quiet before the limit takes the machine: the slice's unpaid orders
        # (which the next pre-roll stands in for) have expired and every event is consumed.
        consistency.wait_until_expired(
            system.database_urls, timeout_s=EXPIRY_DEADLINE_S, first_order_id=level.first_order_id
        )
        level.drain.wait_until_quiet(quiet_s=1.0)
        orders_placed, cpu_s = level.limit.run(concurrency, slice_s)
        limit_orders += orders_placed
        limit_cpu_s += cpu_s
    batch_sizes = report.mean_batch_sizes(batches_before, _batch_totals(system))
    orders = max(load.orders, 1)
    # Events written while the load ran, not those of the quiet wait for the last expiries.
    lags = consistency.relay_lags_ms(system.database_urls, windows_epoch_s=due_windows)
    orders_per_s = load.orders / elapsed
    limit_per_s = limit_orders / duration_s
    return {
        "concurrency": concurrency,
        "orders": load.orders,
        "orders_per_s": round(orders_per_s, 1),
        **report.latency_summary(load.latencies_ms),
        "status_counts": dict(load.statuses),
        "follow_up_counts": dict(load.follow_up_statuses),
        "cpu_ms_per_order": round(
            sum(cpu_used_s[name] for name in groups if name not in _NOT_THE_SYSTEM) * 1000 / orders,
            2,
        ),
        # Where it goes, and what the machine also spent on the local SQS and the load.
        "cpu_ms_per_order_by_process": {
            name: round(seconds * 1000 / orders, 2) for name, seconds in cpu_used_s.items()
        },
        # Share of one core the load generator used: near 1.0 would make it the bottleneck.
        "load_generator_cpu_cores": round(cpu_used_s[_LOAD_GENERATOR] / elapsed, 2),
        "relay_lag_p50_ms": round(report.percentile(lags, 0.50)),
        "relay_lag_p99_ms": round(report.percentile(lags, 0.99)),
        "db_limit_orders_per_s": round(limit_per_s, 1),
        "ratio_to_db_limit": round(orders_per_s / limit_per_s, 3) if limit_per_s else 0.0,
        # The bare SQL's own cost (driver and server): the floor under `cpu_ms_per_order`.
        "db_limit_cpu_ms_per_order": round(limit_cpu_s * 1000 / max(limit_orders, 1.0), 2),
        # How many orders shared each reservation call, journal commit and final commit.
        "mean_batch_size": batch_sizes,
        "payment_timeout_s": PAYMENT_TIMEOUT_S,
        # The expiry lag is measured for the orders that fell due while the load ran.
        "due_windows_epoch_s": due_windows,
    }


def _add_expiry_lags(run: dict[str, Any], drain: EventDrain) -> None:
    """From each unpaid order's expiresAt to its order_cancelled (payment_timeout) event's
    arrival on the queue, for the orders that fell due while the level's load ran."""
    lags = [
        lag
        for due_from, due_until in run.pop("due_windows_epoch_s")
        for lag in drain.expiry_lags_ms(due_from, due_until)
    ]
    run["expired_orders"] = len(lags)
    run["expiry_lag_p50_ms"] = round(report.percentile(lags, 0.50))
    run["expiry_lag_p99_ms"] = round(report.percentile(lags, 0.99))


def _system_slice(
    level: Level, groups: dict[str, list[psutil.Process]], duration_s: float
) -> tuple[LoadResult, float, dict[str, float]]:
    """Orders for `duration_s`: what they answered, the seconds they took, each group's CPU."""
    # The event consumer shares this process and keeps every event it received; frozen, they
    # are not walked by a full collection, which paused the load's clients for 60-110 ms and
    # counted that pause in the orders' latency.
    gc.freeze()
    cpu_before = {name: cpu.cpu_seconds(processes) for name, processes in groups.items()}
    started = time.monotonic()
    load = _order_load(level.system, level.catalog, level.concurrency, duration_s)
    elapsed = time.monotonic() - started
    cpu_used_s = {
        name: cpu.cpu_seconds(processes) - cpu_before[name] for name, processes in groups.items()
    }
    return load, elapsed, cpu_used_s


def _order_load(
    system: System, catalog: Catalog, concurrency: int, duration_s: float
) -> LoadResult:
    return asyncio.run(
        closed_loop(
            f"{system.url('order_service')}/api/v1/orders",
            catalog.shoppers,
            catalog.product_ids,
            concurrency=concurrency,
            duration_s=duration_s,
        )
    )


def _batch_totals(system: System) -> dict[str, tuple[float, float]]:
    metrics = requests.get(f"{system.url('order_service')}/metrics", timeout=10)
    metrics.raise_for_status()
    return report.batch_totals(metrics.text)


def gunicorn_settings(system: System) -> dict[str, Any]:
    return {
        "gunicorn_workers": {spec.name: gunicorn_workers(spec, system.env) for spec in SERVICES},
        "gunicorn_worker_class": {
            spec.name: gunicorn_worker_class(spec, system.env) for spec in SERVICES
        },
        # Threads matter to gthread workers only.
        "gunicorn_threads": {
            spec.name: gunicorn_threads(spec, system.env)
            for spec in SERVICES
            if gunicorn_worker_class(spec, system.env) == "gthread"
        },
    }


def _process_groups(system: System) -> dict[str, list[psutil.Process]]:
    """Each service (with its gunicorn workers), the relay, the database; and, reported but
    not counted as the system's, the local SQS (it stands in for AWS) and the load generator."""
    groups = {
        name: cpu.process_tree(process.pid) for name, process in system.supervisor.processes.items()
    }
    groups["database"] = cpu.database_processes()
    groups[_LOAD_GENERATOR] = [psutil.Process()]
    return groups


def profile_order_path(
    system: System, catalog: Catalog, concurrency: int, arguments: argparse.Namespace
) -> str:
    """A separate, unmeasured run under py-spy, so sampling never skews the figures above."""
    master = system.supervisor.processes[PROFILED_SERVICE].pid
    output = results_dir() / "order-path-profile.speedscope.json"
    seconds = arguments.profile_seconds
    print(f"bench: profiling {PROFILED_SERVICE} for {seconds:.0f}s (py-spy)", flush=True)
    spy = subprocess.Popen(
        [
            str(Path(sys.executable).with_name("py-spy")),
            "record",
            "--pid",
            str(master),
            "--subprocesses",
            "--format",
            "speedscope",
            "--duration",
            str(int(seconds)),
            "--output",
            str(output),
            "--nonblocking",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    _order_load(system, catalog, concurrency, seconds + 2)
    spy.wait(timeout=60)
    return str(output)


if __name__ == "__main__":
    raise SystemExit(main())
