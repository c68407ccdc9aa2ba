"""``modelyard serve --workers 2``: both processes serve a deployment created through the
server, a hot swap under load fails no request, ``/metrics`` sums the processes, and
stopping the server, or killing it, leaves no worker behind."""

from __future__ import annotations

import contextlib
import shutil
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import psutil
import torch
from prometheus_client import CollectorRegistry, multiprocess

from tests.serving.conftest import MLP, deploy, push_catalog
from tests.support.process import server_process
from tests.support.server import ADMIN_KEY

AUTH = {"Authorization": f"Bearer {ADMIN_KEY}"}
X = np.linspace(-1, 1, 64, dtype=np.float32).reshape(1, 64)
# Requests sent before giving up on seeing every worker answer (each on a new connection).
MAX_REQUESTS = 3000


def served_by(metrics_dir: Path, pid: int, version: str, scratch: Path) -> float:
    """Requests for deployment ``mlp`` at ``version`` that process ``pid`` answered with 200,
    read from its own file of the server's Prometheus folder."""
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
        if s.name == "modelyard_inference_requests_total"
        and s.labels == {"deployment": "mlp", "version": version, "outcome": "ok"}
    )


class Load:
    """Threads sending predictions, each on a new connection, recording every answer."""

    def __init__(self, url: str, threads: int = 4) -> None:
        self.url = url
        self.answers: list[tuple[int, str]] = []
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._threads = [threading.Thread(target=self._send) for _ in range(threads)]

    def _send(self) -> None:
        while not self._stop.is_set() and len(self.answers) < MAX_REQUESTS:
            try:
                reply = httpx.post(
                    f"{self.url}/api/v1/deployments/mlp/predict",
                    json={"inputs": X.tolist()},
                    headers=AUTH,
                    timeout=60,
                )
                answer = (reply.status_code, reply.text)
            except httpx.HTTPError as exc:
                answer = (0, repr(exc))
            with self._lock:
                self.answers.append(answer)

    @contextlib.contextmanager
    def running(self) -> Iterator[Load]:
        for thread in self._threads:
            thread.start()
        try:
            yield self
        finally:
            self._stop.set()
            for thread in self._threads:
                thread.join()


def stats_each_time(url: str, version: int, asks: int = 8) -> list[dict[str, Any]]:
    """Triton's statistics of deployment ``mlp`` at ``version``, asked ``asks`` times, each on
    a new connection (so that more than one process answers)."""
    entries = []
    for _ in range(asks):
        reply = httpx.get(f"{url}/v2/models/mlp/stats", headers=AUTH, timeout=60)
        assert reply.status_code == 200, reply.text
        (entry,) = [e for e in reply.json()["model_stats"] if e["version"] == str(version)]
        entries.append(entry)
    return entries


def answers_of(load: Load, version: int) -> int:
    """How many of the load's answers came from ``version``."""
    return sum(
        httpx.Response(200, text=text).json()["model_version"] == version
        for _, text in load.answers
    )


def wait_until(condition: object, load: Load) -> None:
    """Until ``condition()`` holds or the load has sent all it may."""
    stopped = threading.Event()
    while not condition() and len(load.answers) < MAX_REQUESTS:  # type: ignore[operator]
        stopped.wait(0.1)


def swap_under_load(
    url: str,
    admin: httpx.Client,
    processes: list[psutil.Process],
    metrics_dir: Path,
    tmp_path: Path,
) -> tuple[Load, dict[int, np.ndarray]]:
    """Deploy version 1 of an MLP, move it to version 2 under load once every HTTP process
    served version 1, and check that every process served both, that no request failed and
    that every answer equals its version's in-process output; returns the finished load and
    each version's output for :data:`X`."""
    scratch = tmp_path / "scratch"
    first = push_catalog(admin, "mlp", MLP, tmp_path, seed=0)
    second = push_catalog(admin, "mlp", MLP, tmp_path, seed=1)
    deploy(admin, "mlp", model="mlp", version=1)

    def every_process_served(version: str) -> bool:
        return all(served_by(metrics_dir, p.pid, version, scratch) > 0 for p in processes)

    with Load(url).running() as load:
        wait_until(lambda: every_process_served("1"), load)
        assert every_process_served("1")
        swap = admin.patch("/api/v1/deployments/mlp", json={"version": 2})
        assert swap.status_code == 200, swap.text
        wait_until(lambda: every_process_served("2"), load)
    assert every_process_served("2")
    failed = [a for a in load.answers if a[0] != 200]
    assert not failed, failed[:3]
    with torch.no_grad():
        expected = {v: m(torch.from_numpy(X)).numpy() for v, m in ((1, first), (2, second))}
    for _, text in load.answers:
        answer = httpx.Response(200, text=text).json()
        (outputs,) = answer["outputs"].values()
        assert np.allclose(outputs, expected[answer["model_version"]], atol=1e-5)
    return load, expected


def test_two_workers_serve_swap_and_stop_together(tmp_path: Path) -> None:
    data = tmp_path / "data"
    with server_process(data, tmp_path / "server.log", MODELYARD_WORKERS="2") as server:
        supervisor = psutil.Process(server.process.pid)
        children = supervisor.children()
        workers = [c for c in children if "resource_tracker" not in " ".join(c.cmdline())]
        assert len(workers) == 2
        (metrics_dir,) = [
            p for p in data.glob("tmp/proc-*/prometheus") if f"-{supervisor.pid}-" in p.parent.name
        ]
        with httpx.Client(base_url=server.url, headers=AUTH, timeout=120) as admin:
            load, _ = swap_under_load(server.url, admin, workers, metrics_dir, tmp_path)

            # Any worker's /metrics counts the requests of both.
            text = admin.get("/metrics").text
            total = sum(
                float(line.rsplit(" ", 1)[1])
                for line in text.splitlines()
                if line.startswith("modelyard_inference_requests_total{")
                and 'deployment="mlp"' in line
                and 'outcome="ok"' in line
            )
            assert total == len(load.answers)

            # Triton's statistics count the inferences of both, whichever process answers.
            served = answers_of(load, 2)
            for entry in stats_each_time(server.url, 2):
                assert entry["inference_count"] == served, entry
                stats = entry["inference_stats"]
                assert stats["success"]["count"] == served, entry
                assert stats["fail"]["count"] == 0, entry
                assert 0 < entry["execution_count"] <= served, entry

        server.process.terminate()
        server.process.wait(timeout=60)
        # Workers are stopped and reaped before the supervisor exits; multiprocessing's
        # resource tracker ends once the supervisor has.
        _, left = psutil.wait_procs(children, timeout=60)
        assert not [(c.pid, c.cmdline()) for c in left]


def test_workers_end_with_a_killed_supervisor(tmp_path: Path) -> None:
    log = tmp_path / "server.log"
    with server_process(tmp_path / "data", log, MODELYARD_WORKERS="2") as server:
        children = psutil.Process(server.process.pid).children()
        assert len(children) == 3  # two workers and multiprocessing's resource tracker
        server.kill9()
        # The kernel sends each worker SIGTERM when the supervisor dies (PR_SET_PDEATHSIG).
        _, left = psutil.wait_procs(children, timeout=60)
        assert not [(c.pid, c.cmdline()) for c in left]
