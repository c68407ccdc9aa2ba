"""Distributed train jobs through the API: a live server, its local executor, real ranks."""

from __future__ import annotations

import os
import signal
import time

import httpx
import pytest

from tests.jobs.conftest import api, server, train_body, wait_for  # noqa: F401

pytestmark = pytest.mark.slow


def _events(api: httpx.Client, job_id: str) -> list[dict[str, object]]:  # noqa: F811
    items: list[dict[str, object]] = api.get(
        f"/api/v1/jobs/{job_id}/events", params={"limit": 500}
    ).json()["items"]
    return items


def test_a_distributed_spec_is_checked_before_it_is_queued(api: httpx.Client) -> None:  # noqa: F811
    bad = api.post("/api/v1/jobs", json=train_body(distributed={"strategy": "allreduce"}))
    assert bad.status_code == 422
    assert "distributed.strategy" in bad.text
    uneven = api.post("/api/v1/jobs", json=train_body(batch_size=63, distributed={"workers": 2}))
    assert uneven.status_code == 422
    assert "batch_size" in uneven.text


def test_a_killed_ddp_worker_restarts_from_the_checkpoint_and_the_job_succeeds(
    api: httpx.Client,  # noqa: F811
) -> None:
    body = train_body(
        epochs=40,
        batch_size=16,
        checkpoint_every_steps=20,
        distributed={"strategy": "ddp", "workers": 2, "max_restarts": 2},
    )
    job = api.post("/api/v1/jobs", json=body).json()
    deadline = time.monotonic() + 120
    victim = None
    while victim is None and time.monotonic() < deadline:
        events = _events(api, job["id"])
        workers = [e for e in events if e["type"] == "workers"]
        if workers and any(e["type"] == "checkpoint" for e in events):
            victim = workers[0]["data"]["workers"][1]["pid"]  # type: ignore[index]
        time.sleep(0.1)
    assert victim is not None, "the job never reached its first checkpoint"
    os.kill(victim, signal.SIGKILL)

    done = wait_for(api, job["id"])
    assert done["status"] == "succeeded", done["error"]
    events = _events(api, job["id"])
    restarted = [e for e in events if e["type"] == "restarted"]
    assert len(restarted) == 1
    assert restarted[0]["data"]["from_step"] > 0  # type: ignore[index]
    assert [e["data"]["restart"] for e in events if e["type"] == "workers"] == [0, 1]  # type: ignore[index]
    version = api.get(f"/api/v1/models/{done['result']['model']}/versions/1").json()
    assert version["params"]["distributed"]["workers"] == 2
    assert version["metrics"]["train_accuracy"] > 0.9


def test_a_parameter_server_job_trains_and_registers_a_version(api: httpx.Client) -> None:  # noqa: F811
    body = train_body(epochs=3, distributed={"strategy": "parameter_server", "workers": 2})
    done = wait_for(api, api.post("/api/v1/jobs", json=body).json()["id"])
    assert done["status"] == "succeeded", done["error"]
    workers = next(e for e in _events(api, done["id"]) if e["type"] == "workers")
    assert workers["data"]["workers"] == 2  # type: ignore[index]
    version = api.get(f"/api/v1/models/{done['result']['model']}/versions/1").json()
    assert version["params"]["distributed"]["strategy"] == "parameter_server"
    assert version["metrics"]["train_accuracy"] > 0.5


def test_a_cancelled_ddp_job_stops_every_rank_at_the_same_step(api: httpx.Client) -> None:  # noqa: F811
    body = train_body(epochs=500, distributed={"strategy": "ddp", "workers": 2})
    job = api.post("/api/v1/jobs", json=body).json()
    deadline = time.monotonic() + 120
    while not any(e["type"] == "step" for e in _events(api, job["id"])):
        assert time.monotonic() < deadline, "the job never made a step"
        time.sleep(0.2)
    api.post(f"/api/v1/jobs/{job['id']}/cancel")
    done = wait_for(api, job["id"])
    assert done["status"] == "cancelled"
    events = _events(api, job["id"])
    # The ranks agreed to stop and rank 0 saved where they were, rather than being killed.
    assert events[-2]["type"] == "checkpoint", [e["type"] for e in events[-4:]]
    assert "killed" not in str(done["error"] or "")
