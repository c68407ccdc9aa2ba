"""The rows waiting in a deployment version's queue, as ``/metrics`` reports them."""

from __future__ import annotations

import gc
from pathlib import Path

import httpx
from prometheus_client import CollectorRegistry, generate_latest

from modelyard.serving.metrics import ServingMetrics
from tests.serving.conftest import MLP, deploy, push_catalog

SERIES = 'modelyard_inference_queue_depth{deployment="d",version="1"}'


class _Queue:
    def __init__(self, depth: int) -> None:
        self.queue_depth = depth


def _scrape(metrics: ServingMetrics) -> str:
    return generate_latest(metrics.registry).decode()


def test_the_depth_is_read_when_scraped_and_drops_to_0_once_the_queue_is_retired() -> None:
    metrics = ServingMetrics(CollectorRegistry())
    metrics.observer("d", "1")
    queue = _Queue(5)
    metrics.watch_queue("d", "1", queue)
    assert f"{SERIES} 5.0" in _scrape(metrics)
    queue.queue_depth = 2
    assert f"{SERIES} 2.0" in _scrape(metrics)
    del queue
    gc.collect()
    assert f"{SERIES} 0.0" in _scrape(metrics)
    metrics.forget("d")
    assert SERIES not in _scrape(metrics)


def test_several_processes_leave_the_series_out(tmp_path: Path) -> None:
    metrics = ServingMetrics(CollectorRegistry(), shared_dir=tmp_path)
    queue = _Queue(5)
    metrics.watch_queue("d", "1", queue)
    assert "modelyard_inference_queue_depth{" not in _scrape(metrics)


def test_a_served_version_reports_its_queue(api: httpx.Client, tmp_path: Path) -> None:
    push_catalog(api, "mlp", MLP, tmp_path)
    deploy(api, "queued", model="mlp")
    body = {"inputs": [[0.1] * 64]}
    assert api.post("/api/v1/deployments/queued/predict", json=body).status_code == 200
    metrics = api.get("/metrics").text
    assert 'modelyard_inference_queue_depth{deployment="queued",version="1"} 0.0' in metrics
    assert api.delete("/api/v1/deployments/queued").status_code == 204
    assert 'modelyard_inference_queue_depth{deployment="queued"' not in api.get("/metrics").text
