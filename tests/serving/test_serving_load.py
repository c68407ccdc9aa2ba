"""A bounded load test: 20 000 requests at concurrency 128 with a hot swap in the middle."""

from __future__ import annotations

import asyncio
import collections
from pathlib import Path

import httpx
import numpy as np
import psutil
import pytest

from tests.serving.conftest import MLP, deploy, push_catalog
from tests.support.server import LiveServer

REQUESTS = 20_000
CONCURRENCY = 128


async def _run(url: str, key: str, n: int, swap_at: int | None) -> collections.Counter[int]:
    body = {
        "inputs": [
            {
                "name": "input",
                "shape": [1, 64],
                "datatype": "FP32",
                "data": np.full(64, 0.25).tolist(),
            }
        ]
    }
    codes: collections.Counter[int] = collections.Counter()
    limits = httpx.Limits(max_connections=CONCURRENCY, max_keepalive_connections=CONCURRENCY)
    async with httpx.AsyncClient(
        base_url=url, headers={"Authorization": f"Bearer {key}"}, timeout=120, limits=limits
    ) as client:
        queue: asyncio.Queue[int] = asyncio.Queue()
        for i in range(n):
            queue.put_nowait(i)

        async def worker() -> None:
            while not queue.empty():
                i = queue.get_nowait()
                if swap_at is not None and i == swap_at:
                    reply = await client.patch("/api/v1/deployments/load", json={"version": "2"})
                    assert reply.status_code == 200
                reply = await client.post("/v2/models/load/infer", json=body)
                codes[reply.status_code] += 1

        await asyncio.gather(*[worker() for _ in range(CONCURRENCY)])
    return codes


@pytest.mark.slow
def test_twenty_thousand_requests_no_errors_no_growth(
    server: LiveServer, api: httpx.Client, tmp_path: Path
) -> None:
    push_catalog(api, "mlp", MLP, tmp_path, seed=0)
    push_catalog(api, "mlp", MLP, tmp_path, seed=1)
    deploy(api, "load", model="mlp", version="1", max_batch_size=64, max_queue=4096)
    process = psutil.Process()
    warm = asyncio.run(_run(server.url, server.admin_key, 2_000, None))
    assert set(warm) <= {200, 429}
    before = process.memory_info().rss
    codes = asyncio.run(_run(server.url, server.admin_key, REQUESTS, REQUESTS // 2))
    after = process.memory_info().rss
    assert sum(codes.values()) == REQUESTS
    assert set(codes) <= {200, 429}, codes
    assert codes[200] >= REQUESTS * 0.9
    # The server runs in this process: its memory must not grow with the number served.
    assert after - before < 64 * 1024 * 1024, (before, after)
    assert api.get("/api/v1/deployments/load").json()["versions"][0]["version"] == 2
