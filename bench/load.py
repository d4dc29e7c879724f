"""The closed-loop load: N virtual customers placing orders back to back, paying and cancelling."""

from __future__ import annotations

import asyncio
import itertools
import random
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field

import aiohttp


@dataclass
class LoadResult:
    concurrency: int
    duration_s: float
    latencies_ms: list[float] = field(default_factory=list)
    statuses: Counter[str] = field(default_factory=Counter)
    follow_up_statuses: Counter[str] = field(default_factory=Counter)

    @property
    def orders(self) -> int:
        return self.statuses["201"]

    def add(self, other: LoadResult) -> None:
        """Counts another slice of the same load as part of this one."""
        self.latencies_ms.extend(other.latencies_ms)
        self.statuses.update(other.statuses)
        self.follow_up_statuses.update(other.follow_up_statuses)


@dataclass(frozen=True)
class Shopper:
    token: str


async def closed_loop(
    order_url: str,
    shoppers: list[Shopper],
    product_ids: list[str],
    *,
    concurrency: int,
    duration_s: float,
    seed: int = 7,
) -> LoadResult:
    """Each of `concurrency` tasks sends its next order as soon as the previous one answers,
    each order as the next of `shoppers` in turn."""
    result = LoadResult(concurrency, duration_s)
    sequence = itertools.count(1)
    deadline = time.monotonic() + duration_s
    connector = aiohttp.TCPConnector(limit=concurrency * 2, keepalive_timeout=30)
    timeout = aiohttp.ClientTimeout(total=30)
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:

        async def shopper_loop(index: int) -> None:
            rng = random.Random(seed + index)
            while time.monotonic() < deadline:
                number = next(sequence)
                # Each order is the next customer's: the unpaid orders (most of them, until
                # they expire) spread over every customer, as a shop's many customers' do,
                # instead of piling up on one per client against MAX_PENDING_ORDERS.
                shopper = shoppers[number % len(shoppers)]
                headers = {"Authorization": f"Bearer {shopper.token}"}
                await _place_and_follow_up(
                    session, order_url, headers, rng, product_ids, number, result
                )

        await asyncio.gather(*(shopper_loop(i) for i in range(concurrency)))
    return result


async def _place_and_follow_up(
    session: aiohttp.ClientSession,
    order_url: str,
    headers: dict[str, str],
    rng: random.Random,
    product_ids: list[str],
    number: int,
    result: LoadResult,
) -> None:
    items = [
        {"productId": product_id, "quantity": rng.randint(1, 3)}
        for product_id in rng.sample(product_ids, rng.randint(1, 3))
    ]
    started = time.perf_counter()
    async with session.post(
        order_url,
        json={"items": items},
        headers={**headers, "Idempotency-Key": str(uuid.uuid4())},
    ) as response:
        body = await response.json(content_type=None)
        status = response.status
    result.latencies_ms.append((time.perf_counter() - started) * 1000)
    result.statuses[str(status)] += 1
    if status != 201:
        return
    # Every 10th order is cancelled, every other 5th is paid: the mix the issue asks for.
    action = "cancel" if number % 10 == 0 else "pay" if number % 5 == 0 else None
    if action:
        async with session.post(f"{order_url}/{body['id']}/{action}", headers=headers) as follow:
            await follow.read()
            result.follow_up_statuses[f"{action} {follow.status}"] += 1
