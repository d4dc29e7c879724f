"""`make bench-scale`: the bench on databases the size of a shop that has run for years.

Starts the system as `make bench` does, loads (or, with --reuse, keeps) a catalogue of
--products products and --orders orders (bench/scale_load.py), then measures on it, with the
system running: one-word searches and customers' first page of orders (p50/p99, each beside
the database's plan for the statements the service runs), then the order load of `make bench`
at --concurrency. Results: a report on stdout and bench/results/scale.json.

Usage: python -m bench.scale [--products 1000000] [--orders 5000000] [--reuse]
"""

from __future__ import annotations

import argparse
import json
import time
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

import sqlalchemy as sa

from bench import consistency, report, scale_load, scale_rows
from bench.__main__ import (
    add_load_arguments,
    checked,
    gunicorn_settings,
    measure_levels,
    print_levels,
)
from bench.plans import Plan, plans_of
from bench.reads import Read, timed_reads
from bench.scale_load import Loaded
from bench.setup import Catalog
from bench.system import System, logs_dir, results_dir, start
from common.pagination import DEFAULT_LIMIT
from order_service.orders_repository import OrderFilter, OrderRepository
from product_service.repository import ProductRepository, SearchFilter
from product_service.search_words import query_words

RESULTS_FILE = "scale.json"


def parse_arguments(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.scale", description=__doc__)
    add_load_arguments(parser, concurrency=[32])
    parser.add_argument("--products", type=int, default=1_000_000)
    parser.add_argument("--orders", type=int, default=5_000_000)
    parser.add_argument(
        "--reuse",
        action="store_true",
        help="keep the databases of the last load when they hold exactly these sizes",
    )
    parser.add_argument(
        "--read-seconds", type=float, default=15.0, help="per kind of read and client count"
    )
    parser.add_argument(
        "--read-clients",
        type=int,
        nargs="+",
        default=[1, 8],
        help="the reads alone (their own latency), then sharing the services with others",
    )
    return checked(parser, parser.parse_args(argv))


def main(argv: list[str] | None = None) -> int:
    arguments = parse_arguments(argv)
    earlier = (
        scale_load.reusable(arguments.mysql_url, arguments.products, arguments.orders)
        if arguments.reuse
        else None
    )
    logs = logs_dir()
    with (logs / "devstack.log").open("w") as log:
        system = start(
            arguments.mysql_url,
            logs,
            log,
            overrides={},
            fresh=earlier is None,
            prefix=scale_load.DATABASE_PREFIX,
        )
        try:
            loaded = earlier or scale_load.load(system, arguments.products, arguments.orders)
            # Logged in after the load: a full one outlasts the tokens' lifetime.
            catalog = scale_load.catalog_of(system, loaded)
            print_load(loaded, reused=earlier is not None)
            reads = measure_reads(system, catalog, loaded, arguments)
            print_reads(reads)
            runs, verdict = measure_levels(system, catalog, arguments, _scope(system, catalog))
        finally:
            system.stop()
    document = {
        "machine": report.machine(),
        "settings": gunicorn_settings(system),
        "load": {**loaded.summary(), "reused": earlier is not None},
        **reads,
        "duration_s": arguments.duration,
        "warmup_s": arguments.warmup,
        "slices": arguments.slices,
        "runs": runs,
        "consistency": verdict.as_dict(),
    }
    path = results_dir() / RESULTS_FILE
    path.write_text(json.dumps(document, indent=2) + "\n")
    print_levels(runs, verdict)
    print(f"results: {path}")
    return 0 if verdict.consistent else 1


def _scope(system: System, catalog: Catalog) -> consistency.Scope:
    """The orders placed from now on, and the stock of the products they order from now:
    the loaded orders took their stock before the bench began, and none has events."""
    first_order_id = scale_rows.first_id_at(time.time_ns() // 1_000_000)
    stock = consistency.stock_of(system.database_urls, catalog.product_ids)
    return consistency.Scope(first_order_id, stock)


@dataclass(frozen=True)
class SearchWord:
    word: str
    why: str


def search_words() -> list[SearchWord]:
    """Words of the loaded catalogue, from the commonest to rare ones; all lower case, as a
    shopper types them."""
    vocabulary = scale_rows.Vocabulary.build(scale_rows.PRODUCT_SEED)
    return [
        SearchWord(vocabulary.words[0], "the commonest description word"),
        SearchWord("co", "a two-letter prefix"),
        SearchWord(scale_rows.MATERIALS[0], "a material, one name in ~30"),
        SearchWord(scale_rows.KINDS[0], "a kind of thing, one name in ~60"),
        SearchWord(vocabulary.brands[0].lower(), "a brand, one name in 400"),
        SearchWord(scale_rows.GENERAL[-1], "a rare description word"),
        SearchWord("zzz", "a word no product has"),
    ]


def measure_reads(
    system: System, catalog: Catalog, loaded: Loaded, arguments: argparse.Namespace
) -> dict[str, Any]:
    words = search_words()
    search_url = f"{system.url('product_service')}/api/v1/products/search?q="
    search = [Read(entry.word, search_url + quote(entry.word)) for entry in words]
    orders_url = f"{system.url('order_service')}/api/v1/orders"
    pages = [
        Read("first page", orders_url, {"Authorization": f"Bearer {shopper.token}"})
        for shopper in catalog.shoppers
    ]
    urls = system.database_urls
    print(
        f"bench-scale: {arguments.read_seconds:.0f}s of searches, then of first pages, "
        f"at each of {arguments.read_clients} clients",
        flush=True,
    )
    return {
        "search": {
            **_timed(search, arguments),
            "words": {entry.word: entry.why for entry in words},
            "matches": _term_counts(urls["PRODUCT_DATABASE_URL"], words),
            "plans": {
                entry.word: [plan.as_dict() for plan in _search_plans(urls, entry.word)]
                for entry in (words[0], words[4], words[-1])
            },
        },
        "orders_first_page": {
            **_timed(pages, arguments),
            "orders_per_shopper": _orders_per_shopper(urls["ORDER_DATABASE_URL"], loaded),
            "plans": [plan.as_dict() for plan in _page_plans(urls, loaded.user_ids[0])],
        },
    }


def _timed(reads: list[Read], arguments: argparse.Namespace) -> dict[str, Any]:
    """The reads' figures at each client count, keyed by it."""
    return {
        "by_clients": {
            str(clients): timed_reads(
                reads, concurrency=clients, duration_s=arguments.read_seconds
            ).summary()
            for clients in arguments.read_clients
        }
    }


def _search_plans(urls: dict[str, str], word: str) -> list[Plan]:
    """What GET /products/search?q=<word> runs: the API's first page, limit + 1 rows."""
    wanted = SearchFilter(words=tuple(query_words(word)))
    return plans_of(
        urls["PRODUCT_DATABASE_URL"],
        lambda connection: ProductRepository(connection).search(wanted, None, DEFAULT_LIMIT + 1),
    )


def _page_plans(urls: dict[str, str], user_id: str) -> list[Plan]:
    """What GET /orders runs for a customer: their newest orders, limit + 1, and the items."""
    return plans_of(
        urls["ORDER_DATABASE_URL"],
        lambda connection: OrderRepository(connection).page(
            OrderFilter(user_id=user_id), None, DEFAULT_LIMIT + 1
        ),
    )


def _term_counts(url: str, words: list[SearchWord]) -> dict[str, int]:
    """How many products each word matches."""
    count = sa.text("SELECT COUNT(*) FROM product_search_terms WHERE term = :term")
    engine = sa.create_engine(url, poolclass=sa.pool.NullPool)
    with engine.connect() as connection:
        counts = {
            entry.word: int(connection.execute(count, {"term": entry.word}).scalar_one())
            for entry in words
        }
    engine.dispose()
    return counts


def _orders_per_shopper(url: str, loaded: Loaded) -> dict[str, int]:
    statement = sa.text(
        "SELECT user_id, COUNT(*) FROM orders WHERE user_id IN :users GROUP BY user_id"
    ).bindparams(sa.bindparam("users", expanding=True))
    engine = sa.create_engine(url, poolclass=sa.pool.NullPool)
    with engine.connect() as connection:
        counts = sorted(
            int(n) for _, n in connection.execute(statement, {"users": loaded.user_ids})
        )
    engine.dispose()
    return {"min": counts[0], "median": counts[len(counts) // 2], "max": counts[-1]}


def print_load(loaded: Loaded, *, reused: bool) -> None:
    how = "reused, loaded earlier" if reused else "loaded"
    print(
        f"bench-scale: {loaded.products:,} products and {loaded.orders:,} orders {how} in "
        f"{loaded.seconds:.0f} s"
    )
    for table, figures in loaded.seconds_by_table.items():
        rows, seconds = int(figures["rows"]), figures["seconds"]
        what = f"{rows:,} rows in {seconds:.1f} s ({rows / max(seconds, 0.1):,.0f} rows/s)"
        print(f"  {table}: " + (what if rows else f"{seconds:.1f} s"))


def print_reads(reads: dict[str, Any]) -> None:
    search = reads["search"]
    print("\nsearch, one word (GET /api/v1/products/search?q=<word>):")
    print("| q | which | products matching | clients | requests | p50 ms | p99 ms |")
    print("|---|---|---:|---:|---:|---:|---:|")
    for clients, summary in search["by_clients"].items():
        for word, why in search["words"].items():
            # Latencies are of 200s only: a word every request of which failed has none.
            figures = summary["by_label"].get(word, {"requests": 0, "p50_ms": 0, "p99_ms": 0})
            print(
                f"| {word} | {why} | {search['matches'][word]:,} | {clients} | "
                f"{figures['requests']:,} | {figures['p50_ms']:.1f} | {figures['p99_ms']:.1f} |"
            )
        print(f"| every word | | | {clients} | {_figures(summary)}")
    for word, plans in search["plans"].items():
        print(f"\nplan of search q={word}:")
        _print_plans(plans)
    page = reads["orders_first_page"]
    print(
        "\nfirst page of a customer's orders (GET /api/v1/orders as the customer), orders "
        f"per shopper {page['orders_per_shopper']}:"
    )
    print("| clients | requests | p50 ms | p99 ms |\n|---:|---:|---:|---:|")
    for clients, summary in page["by_clients"].items():
        print(f"| {clients} | {_figures(summary)}")
    print("plan of the first page:")
    _print_plans(page["plans"])
    print()


def _figures(summary: dict[str, Any]) -> str:
    """requests, p50 and p99 as the end of a table row, and any status but 200."""
    failed = {status: n for status, n in summary["status_counts"].items() if status != "200"}
    return f"{summary['requests']:,} | {summary['p50_ms']:.1f} | {summary['p99_ms']:.1f} |" + (
        f" failed: {failed}" if failed else ""
    )


def _print_plans(plans: list[dict[str, Any]]) -> None:
    for plan in plans:
        print("  " + " ".join(plan["statement"].split()))
        print(f"    parameters: {plan['parameters']}")
        for row in plan["plan"]:
            print("    " + ", ".join(f"{key}={value}" for key, value in row.items()))
        for warning in plan["warnings"]:
            print(f"    PLAN WARNING: {warning}")


if __name__ == "__main__":
    raise SystemExit(main())
