"""The counters and the limit book on their own: windows, refunds, which limits apply."""

from __future__ import annotations

import asyncio

import pytest

from modelyard.db.engine import Database
from modelyard.db.tables import UsageLimit
from modelyard.usage.limits import (
    ALL,
    LimitBook,
    Rate,
    RateLimiter,
    WindowState,
    duration,
    rate_headers,
)
from tests.usage.conftest import REDIS_URL, redis_available, unique_prefix


def test_durations_read_as_openai_writes_them() -> None:
    assert duration(0.012) == "12ms"
    assert duration(1.0) == "1s"
    assert duration(59.2) == "1m0s"
    assert duration(360) == "6m0s"
    headers = rate_headers({"requests": WindowState(5, -1, 30.5)})
    assert headers == {
        "x-ratelimit-limit-requests": "5",
        "x-ratelimit-remaining-requests": "0",
        "x-ratelimit-reset-requests": "31s",
    }


@pytest.mark.parametrize("backend", ["memory", "redis"])
def test_hits_stop_at_the_limit_and_refunds_give_room_back(backend: str) -> None:
    if backend == "redis" and not redis_available():
        pytest.skip("Redis is not reachable on 127.0.0.1:6379")
    limiter = RateLimiter(REDIS_URL if backend == "redis" else None, unique_prefix())
    tokens = Rate("tokens", "key", "k", ALL, 100)

    async def scenario() -> list[object]:
        seen: list[object] = [await limiter.hit(tokens, 60), await limiter.hit(tokens, 60)]
        seen.append((await limiter.state(tokens)).remaining)
        await limiter.adjust(tokens, -50)  # the reply used 10 of the 60 reserved
        seen.append((await limiter.state(tokens)).remaining)
        seen.append(await limiter.hit(tokens, 60))
        seen.append(await limiter.hit(tokens, 101))  # never fits
        await limiter.adjust(tokens, -1000)  # never below zero
        seen.append((await limiter.state(tokens)).remaining)
        return seen

    assert asyncio.run(scenario()) == [True, False, 40, 90, True, False, 100]


def test_the_book_gives_every_limit_of_key_and_project_for_a_deployment(
    migrated_db: Database,
) -> None:
    with migrated_db.session() as session:
        session.add_all(
            [
                UsageLimit(scope="key", subject_id="k", deployment=ALL, requests_per_minute=10),
                UsageLimit(scope="key", subject_id="k", deployment="a", tokens_per_minute=99),
                UsageLimit(scope="project", subject_id="p", deployment=ALL, running_jobs=2),
                UsageLimit(scope="project", subject_id="p", deployment="b", requests_per_minute=1),
            ]
        )
    book = LimitBook(migrated_db, ttl=60)
    assert book.rates("k", "p", "a") == []  # nothing read yet
    book.reload()
    assert book.rates("k", "p", "a") == [
        Rate("requests", "key", "k", ALL, 10),
        Rate("tokens", "key", "k", "a", 99),
    ]
    assert book.rates("k", "p", "b") == [
        Rate("requests", "key", "k", ALL, 10),
        Rate("requests", "project", "p", "b", 1),
    ]
    assert book.rates("other", None, None) == []
    row = book.row("project", "p")
    assert row is not None and row.running_jobs == 2


@pytest.mark.parametrize("backend", ["memory", "redis"])
def test_a_large_limit_counted_in_memory_still_stops_at_its_amount(backend: str) -> None:
    if backend == "redis" and not redis_available():
        pytest.skip("Redis is not reachable on 127.0.0.1:6379")
    limiter = RateLimiter(REDIS_URL if backend == "redis" else None, unique_prefix())
    rate = Rate("requests", "project", "p", ALL, 2000)

    async def scenario() -> tuple[int, int]:
        admitted = 0
        for _ in range(2500):
            admitted += await limiter.hit(rate, 1)
        await asyncio.sleep(0.3)  # the counts taken in memory reach the store
        stored = await limiter._state_exact(rate)
        return admitted, stored.remaining

    assert asyncio.run(scenario()) == (2000, 0)
