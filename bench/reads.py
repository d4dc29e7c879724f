"""Closed-loop GETs: N clients each sending its next read as soon as the last one answers."""

from __future__ import annotations

import asyncio
import time
from collections import Counter, defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import aiohttp

from bench import report


@dataclass(frozen=True)
class Read:
    """One request of the mix; `label` groups its latencies in the report."""

    label: str
    url: str
    headers: dict[str, str] = field(default_factory=dict)


@dataclass
class ReadResult:
    latencies_ms: dict[str, list[float]] = field(default_factory=lambda: defaultdict(list))
    statuses: Counter[str] = field(default_factory=Counter)

    def summary(self) -> dict[str, Any]:
        """Every read together, then each label's own figures."""
        every = [ms for values in self.latencies_ms.values() for ms in values]
        return {
            "requests": len(every),
            **report.latency_summary(every),
            "status_counts": dict(self.statuses),
            "by_label": {
                label: {"requests": len(values), **report.latency_summary(values)}
                for label, values in self.latencies_ms.items()
            },
        }


def timed_reads(reads: Sequence[Read], *, concurrency: int, duration_s: float) -> ReadResult:
    """Each client walks the mix from its own starting point, so every read is sent by
    several clients and no two clients send the same one in step."""
    return asyncio.run(_closed_loop(reads, concurrency, duration_s))


async def _closed_loop(reads: Sequence[Read], concurrency: int, duration_s: float) -> ReadResult:
    result = ReadResult()
    deadline = time.monotonic() + duration_s
    connector = aiohttp.TCPConnector(limit=concurrency * 2, keepalive_timeout=30)
    timeout = aiohttp.ClientTimeout(total=30)
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:

        async def client(index: int) -> None:
            position = index
            while time.monotonic() < deadline:
                await _timed_get(session, reads[position % len(reads)], result)
                position += 1

        await asyncio.gather(*(client(i) for i in range(concurrency)))
    return result


async def _timed_get(session: aiohttp.ClientSession, read: Read, result: ReadResult) -> None:
    started = time.perf_counter()
    async with session.get(read.url, headers=read.headers) as response:
        await response.read()
        status = response.status
    if status == 200:
        result.latencies_ms[read.label].append((time.perf_counter() - started) * 1000)
    result.statuses[str(status)] += 1
