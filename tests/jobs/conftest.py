"""A live server with a digits data set, and helpers to drive jobs."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.support.data import digits_npz
from tests.support.server import LiveServer, live_server

TERMINAL = ("succeeded", "failed", "cancelled")
MLP = {"arch": "mlp", "input_shape": [64], "hidden": [32], "num_outputs": 10}


@pytest.fixture
def server(make_settings: Callable[..., object]) -> Iterator[LiveServer]:
    settings = make_settings(executor_slots=2, job_heartbeat_timeout_s=5)
    with live_server(settings) as srv:  # type: ignore[arg-type]
        yield srv


@pytest.fixture
def api(server: LiveServer, tmp_path: Path) -> Iterator[httpx.Client]:
    auth = {"Authorization": f"Bearer {server.admin_key}"}
    with httpx.Client(base_url=server.url, headers=auth, timeout=60) as client:
        upload_digits(client, tmp_path)
        yield client


def upload_digits(client: httpx.Client, tmp_path: Path, name: str = "digits") -> None:
    """Upload scikit-learn's digits as the data set ``name`` (label ``y``)."""
    npz = digits_npz(tmp_path / f"{name}.npz")
    reply = client.post(
        "/api/v1/datasets",
        params={"name": name, "label": "y", "filename": "d.npz"},
        content=npz.read_bytes(),
    )
    assert reply.status_code == 201, reply.text


def train_body(**overrides: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "type": "train",
        "model": {"spec": MLP},
        "dataset": "digits",
        "optimizer": {"name": "adam", "lr": 0.01},
        "epochs": 3,
        "batch_size": 64,
        "seed": 1,
        "validation": {"fraction": 0.2, "seed": 0},
        "preprocessing": {"scale": 0.0625},
    }
    body.update(overrides)
    return body


def wait_for(
    api: httpx.Client, job_id: str, statuses: tuple[str, ...] = TERMINAL, timeout: float = 600
) -> dict[str, Any]:
    """Poll a job until it reaches one of ``statuses`` (a bound, not a timing assertion)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        job: dict[str, Any] = api.get(f"/api/v1/jobs/{job_id}").json()
        if job["status"] in statuses:
            return job
        time.sleep(0.2)
    raise AssertionError(f"job {job_id} did not reach {statuses}: {job}")


def wait_event(api: httpx.Client, job_id: str, kind: str, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        items = api.get(f"/api/v1/jobs/{job_id}/events").json()["items"]
        if any(e["type"] == kind for e in items):
            return
        time.sleep(0.1)
    raise AssertionError(f"job {job_id} never emitted a {kind} event")
