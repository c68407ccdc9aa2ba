"""A bounded load test: 20 000 requests at concurrency 128 with a hot swap during the run."""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path

import httpx
import numpy as np
import psutil
import pytest
from bench.loadgen import LoadResult, run_load

from tests.serving.conftest import MLP, deploy, push_catalog
from tests.support.server import LiveServer

REQUESTS = 20_000
CONCURRENCY = 128


def _body() -> bytes:
    return json.dumps(
        {
            "inputs": [
                {
                    "name": "input",
                    "shape": [1, 64],
                    "datatype": "FP32",
                    "data": np.full(64, 0.25).tolist(),
                }
            ]
        }
    ).encode()


def _load(server: LiveServer, requests: int, out: list[LoadResult]) -> None:
    headers = {"Authorization": f"Bearer {server.admin_key}", "Content-Type": "application/json"}
    out.append(
        run_load(
            server.url + "/v2/models/load/infer",
            _body(),
            headers,
            requests=requests,
            concurrency=CONCURRENCY,
        )
    )


@pytest.mark.slow
def test_twenty_thousand_requests_no_errors_no_growth(
    server: LiveServer, api: httpx.Client, tmp_path: Path
) -> None:
    push_catalog(api, "mlp", MLP, tmp_path, seed=0)
    push_catalog(api, "mlp", MLP, tmp_path, seed=1)
    deploy(api, "load", model="mlp", version="1", max_batch_size=64, max_queue=4096)
    process = psutil.Process()
    warm: list[LoadResult] = []
    _load(server, 2_000, warm)
    assert set(warm[0].statuses) <= {200, 429}
    before = process.memory_info().rss

    results: list[LoadResult] = []
    runner = threading.Thread(target=_load, args=(server, REQUESTS, results))
    runner.start()
    # Swap once a third of the run has been served by version 1.
    stats = server.platform.serving.metrics.version_stats("load", "1")
    while runner.is_alive() and stats.success < 2_000 + REQUESTS // 3:
        time.sleep(0.05)
    swap = api.patch("/api/v1/deployments/load", json={"version": "2"})
    runner.join(timeout=900)
    after = process.memory_info().rss

    assert swap.status_code == 200 and swap.json()["versions"][0]["version"] == 2
    codes = results[0].statuses
    assert sum(codes.values()) == REQUESTS
    assert set(codes) <= {200, 429}, codes
    assert codes[200] >= REQUESTS * 0.9
    served_by_2 = server.platform.serving.metrics.version_stats("load", "2").success
    assert served_by_2 > 0  # the swap happened while requests were flowing
    # The server runs in this process: its memory must not grow with the number served.
    assert after - before < 64 * 1024 * 1024, (before, after)
