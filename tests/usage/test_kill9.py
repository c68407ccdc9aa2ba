"""A server killed with SIGKILL under load loses at most its last usage interval: after a
restart, /api/v1/usage holds every request answered up to the last write, and every
finished job."""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

import httpx

from tests.jobs.conftest import train_body, upload_digits
from tests.serving.conftest import MLP, deploy, push_catalog
from tests.support.process import server_process
from tests.support.server import ADMIN_KEY
from tests.usage.conftest import predict

AUTH = {"Authorization": f"Bearer {ADMIN_KEY}"}
FLUSH_S = 0.5


def test_kill_9_under_load_loses_at_most_the_last_interval(tmp_path: Path) -> None:
    data = tmp_path / "data"
    env = {"MODELYARD_USAGE_FLUSH_S": str(FLUSH_S)}
    answered: list[float] = []
    with server_process(data, tmp_path / "a.log", **env) as srv:
        with httpx.Client(base_url=srv.url, headers=AUTH, timeout=120) as admin:
            push_catalog(admin, "mlp", MLP, tmp_path)
            deploy(admin, "mlp", model="mlp", version=1)
            upload_digits(admin, tmp_path)
            job = admin.post("/api/v1/jobs", json=train_body(epochs=1)).json()
            deadline = time.monotonic() + 120
            while admin.get(f"/api/v1/jobs/{job['id']}").json()["status"] != "succeeded":
                assert time.monotonic() < deadline
                time.sleep(0.2)

        stop = threading.Event()

        def load() -> None:
            with httpx.Client(base_url=srv.url, headers=AUTH, timeout=10) as client:
                while not stop.is_set():
                    try:
                        reply = predict(client)
                    except httpx.HTTPError:
                        return
                    if reply.status_code == 200:
                        answered.append(time.time())

        threads = [threading.Thread(target=load) for _ in range(4)]
        for thread in threads:
            thread.start()
        time.sleep(3)
        killed_at = time.time()
        srv.kill9()
        stop.set()
        for thread in threads:
            thread.join()

    with (
        server_process(data, tmp_path / "b.log", **env) as srv,
        httpx.Client(base_url=srv.url, headers=AUTH, timeout=120) as admin,
    ):
        params: dict[str, Any] = {
            "start": int(killed_at) - 600,
            "bucket_width": "1h",
            "group_by": "kind",
        }
        page = admin.get("/api/v1/usage", params=params).json()
    results = [r for b in page["data"] for r in b["results"]]
    by_kind = {r["kind"]: r for r in results}
    recorded = by_kind["inference"]["num_model_requests"]
    # One interval, a write's own time and the client's view of "answered" as margin.
    safe = sum(1 for t in answered if t < killed_at - 2 * FLUSH_S - 0.5)
    assert len(answered) > 20
    assert safe <= recorded <= len(answered)
    job_usage = by_kind["job"]
    assert job_usage["num_model_requests"] == 1
    assert job_usage["cpu_seconds"] > 0
    assert job_usage["wall_seconds"] > 0
    assert job_usage["peak_memory_bytes"] > 0
    assert job_usage["bytes_written"] > 0
