"""``modelyard serve --workers 2 --model-process``: two HTTP processes and one model process.

A deployment created through one HTTP process is served through both with the outputs of
the in-process model, its versions are loaded once (in the model process, which computes
every batch), a hot swap under load fails no request, /metrics sums every process, a full
queue answers 429 with Retry-After, a deadline answers 504, an explanation is refused with
422, a delete reaches every process, and stopping the server leaves no process behind."""

from __future__ import annotations

import shutil
import threading
from pathlib import Path

import httpx
import numpy as np
import psutil
from prometheus_client import CollectorRegistry, multiprocess

from tests.serving.conftest import MLP, deploy, push_catalog
from tests.serving.test_workers import (
    AUTH,
    X,
    answers_of,
    stats_each_time,
    swap_under_load,
)
from tests.support.process import server_process

# Concurrent bursts sent at a deployment with a one-row queue before giving up on a 429.
MAX_BURSTS = 50


def batches_of(metrics_dir: Path, pid: int, scratch: Path) -> float:
    """Batches process ``pid`` computed, for any deployment, read from its own file."""
    scratch.mkdir(exist_ok=True)
    for old in scratch.iterdir():
        old.unlink()
    source = metrics_dir / f"counter_{pid}.db"
    if not source.exists():
        return 0
    shutil.copy(source, scratch / source.name)
    registry = CollectorRegistry()
    multiprocess.MultiProcessCollector(registry, str(scratch))  # type: ignore[no-untyped-call]
    return sum(
        s.value
        for family in registry.collect()
        for s in family.samples
        if s.name == "modelyard_inference_batches_total"
    )


def burst(url: str, count: int) -> list[httpx.Response]:
    """``count`` predictions sent at once, each from its own thread."""
    replies: list[httpx.Response] = []
    lock = threading.Lock()

    def send() -> None:
        reply = httpx.post(
            f"{url}/api/v1/deployments/tiny/predict",
            json={"inputs": X.tolist()},
            headers=AUTH,
            timeout=60,
        )
        with lock:
            replies.append(reply)

    threads = [threading.Thread(target=send) for _ in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return replies


def test_http_processes_share_one_model_process(tmp_path: Path) -> None:
    data = tmp_path / "data"
    log = tmp_path / "server.log"
    env = {"MODELYARD_WORKERS": "2", "MODELYARD_SERVING_SPLIT": "1"}
    with server_process(data, log, **env) as server:
        supervisor = psutil.Process(server.process.pid)
        children = supervisor.children()
        port = int(server.url.rsplit(":", 1)[1])
        processes = [c for c in children if "resource_tracker" not in " ".join(c.cmdline())]
        http = [
            c
            for c in processes
            if any(conn.laddr and conn.laddr.port == port for conn in c.net_connections("tcp"))
        ]
        models = [c for c in processes if c not in http]
        assert len(http) == 2 and len(models) == 1, [c.cmdline() for c in processes]
        (model_process,) = models
        (metrics_dir,) = [
            p for p in data.glob("tmp/proc-*/prometheus") if f"-{supervisor.pid}-" in p.parent.name
        ]
        scratch = tmp_path / "scratch"
        with httpx.Client(base_url=server.url, headers=AUTH, timeout=120) as admin:
            load, expected = swap_under_load(server.url, admin, http, metrics_dir, tmp_path)

            # Any HTTP process's /metrics sums the requests of both and the batches of the
            # model process.
            text = admin.get("/metrics").text
            sums = {"requests": 0.0, "batches": 0.0}
            for line in text.splitlines():
                if 'deployment="mlp"' not in line:
                    continue
                if (
                    line.startswith("modelyard_inference_requests_total{")
                    and 'outcome="ok"' in line
                ):
                    sums["requests"] += float(line.rsplit(" ", 1)[1])
                if line.startswith("modelyard_inference_batches_total{"):
                    sums["batches"] += float(line.rsplit(" ", 1)[1])
            assert sums["requests"] == len(load.answers)
            assert 0 < sums["batches"] <= len(load.answers)

            # Triton's statistics count the batches the model process computed for the
            # requests of both HTTP processes, whichever of them answers.
            served = answers_of(load, 2)
            for entry in stats_each_time(server.url, 2):
                assert entry["inference_count"] == served, entry
                assert entry["inference_stats"]["success"]["count"] == served, entry
                assert 0 < entry["execution_count"] <= served, entry

            # The Open Inference Protocol route forwards its tensors the same way.
            infer = admin.post(
                "/v2/models/mlp/infer",
                json={
                    "inputs": [
                        {
                            "name": "input",
                            "datatype": "FP32",
                            "shape": [1, 64],
                            "data": X.ravel().tolist(),
                        }
                    ]
                },
            )
            assert infer.status_code == 200, infer.text
            assert np.allclose(infer.json()["outputs"][0]["data"], expected[2].ravel(), atol=1e-5)

            # Explanations need the model where they are computed: refused, saying why.
            explained = admin.post(
                "/api/v1/deployments/mlp/explain", json={"inputs": X.tolist(), "n_steps": 8}
            )
            assert explained.status_code == 422, explained.text
            assert "separate process" in explained.json()["detail"]

            # Each version was loaded once, in the model process, which computed every batch.
            loads = [line for line in log.read_text().splitlines() if "loaded mlp:" in line]
            assert len(loads) == 2, loads
            assert batches_of(metrics_dir, model_process.pid, scratch) > 0
            assert all(batches_of(metrics_dir, w.pid, scratch) == 0 for w in http)

            # One queue for the whole server: with room for one row, a burst is turned away.
            push_catalog(admin, "tiny", MLP, tmp_path, seed=2)
            deploy(admin, "tiny", model="tiny", max_batch_size=1, max_queue=1)
            refused: list[httpx.Response] = []
            for _ in range(MAX_BURSTS):
                replies = burst(server.url, 16)
                assert {r.status_code for r in replies} <= {200, 429}, [r.text for r in replies]
                refused = [r for r in replies if r.status_code == 429]
                if refused:
                    break
            assert refused
            assert refused[0].headers["Retry-After"] == "1"

            # A deadline set by the HTTP process holds in the model process (one clock): one
            # microsecond has passed by the time the request gets there.
            deploy(admin, "hurried", model="tiny", timeout_ms=0.001)
            late = admin.post("/api/v1/deployments/hurried/predict", json={"inputs": X.tolist()})
            assert late.status_code == 504, late.text
            assert "deadline" in late.json()["detail"]

            # Deleted through one process, the deployment is gone from every process.
            assert admin.delete("/api/v1/deployments/tiny").status_code == 204
            stopped = threading.Event()
            answers: set[int] = set()
            for _ in range(200):
                answers = {
                    httpx.post(
                        f"{server.url}/api/v1/deployments/tiny/predict",
                        json={"inputs": X.tolist()},
                        headers=AUTH,
                        timeout=60,
                    ).status_code
                    for _ in range(8)
                }
                if answers == {404}:
                    break
                stopped.wait(0.1)
            assert answers == {404}

        server.process.terminate()
        server.process.wait(timeout=60)
        _, left = psutil.wait_procs(children, timeout=60)
        assert not [(c.pid, c.cmdline()) for c in left]
