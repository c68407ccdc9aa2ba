"""Train jobs through a real server: both request forms, events, cancel, crashes, access."""

from __future__ import annotations

import json
import os
import signal
from typing import Any

import httpx

from tests.api.conftest import user_client
from tests.jobs.conftest import train_body, wait_event, wait_for
from tests.support.server import LiveServer


def test_structured_train_job_registers_a_version_with_lineage(api: httpx.Client) -> None:
    reply = api.post("/api/v1/jobs", json=train_body(output_model="digits-small"))
    assert reply.status_code == 201, reply.text
    job = reply.json()
    assert job["status"] == "queued" and job["spec"]["output_model"] == "digits-small"
    done = wait_for(api, job["id"])
    assert done["status"] == "succeeded", done["error"]
    result = done["result"]
    assert result["model"] == "digits-small" and result["version"] == 1
    assert result["metrics"]["val"]["accuracy"] > 0.85
    assert done["progress"] == 1.0 and done["started_at"] and done["finished_at"]

    version = api.get("/api/v1/models/digits-small/versions/1").json()
    dataset = api.get("/api/v1/datasets/digits").json()
    assert version["format"] == "safetensors" and version["spec"]["hidden"] == [32]
    assert version["lineage"] == {
        "dataset": dataset["id"],
        "job": job["id"],
        "parent_version": None,
        "parent_model": None,
    }
    assert version["params"]["dataset_sha256"] == dataset["sha256"]
    assert version["params"]["preprocessing"]["scale"] == 0.0625
    assert len(version["params"]["history"]) == 3
    assert version["metrics"]["val_accuracy"] == result["metrics"]["val"]["accuracy"]
    logs = api.get(f"/api/v1/jobs/{job['id']}/logs").text
    assert "[epoch] epoch 3" in logs and "status=succeeded" in logs


def test_flat_form_trains_a_model_by_name(api: httpx.Client) -> None:
    body = {
        "model_name": "mlp",
        "data": "digits",
        "optimizer": "adam",
        "learning_rate": 0.01,
        "epochs": 2,
        "preprocessing": {"scale": 0.0625},
    }
    reply = api.post("/api/v1/jobs", json=body)
    assert reply.status_code == 201, reply.text
    spec = reply.json()["spec"]
    assert spec["arch_spec"]["input_shape"] == [64] and spec["arch_spec"]["num_outputs"] == 10
    assert spec["config"]["optimizer"]["lr"] == 0.01
    done = wait_for(api, reply.json()["id"])
    assert done["status"] == "succeeded", done["error"]
    assert done["result"]["model"] == "digits-mlp"
    # Fine-tune the result by name: a registered model named in the flat form.
    reply = api.post(
        "/api/v1/jobs", json={**body, "model_name": "digits-mlp", "output_model": "digits-mlp"}
    )
    assert reply.status_code == 201, reply.text
    assert reply.json()["spec"]["init"]["version"] == 1
    tuned = wait_for(api, reply.json()["id"])
    assert tuned["status"] == "succeeded", tuned["error"]
    v2 = api.get("/api/v1/models/digits-mlp/versions/2").json()
    assert v2["lineage"]["parent_version"] == 1


def _sse(
    api: httpx.Client, job_id: str, last: int | None = None
) -> list[tuple[int, str, dict[str, Any]]]:
    headers = {"Accept": "text/event-stream"}
    if last is not None:
        headers["Last-Event-ID"] = str(last)
    events: list[tuple[int, str, dict[str, Any]]] = []
    with api.stream("GET", f"/api/v1/jobs/{job_id}/events", headers=headers, timeout=120) as r:
        assert r.status_code == 200
        assert r.headers["content-type"].startswith("text/event-stream")
        frame: dict[str, str] = {}
        for line in r.iter_lines():
            if line == "":
                if frame.get("event") == "end":
                    break
                if "id" in frame:
                    events.append((int(frame["id"]), frame["event"], json.loads(frame["data"])))
                frame = {}
            elif not line.startswith(":"):
                key, _, value = line.partition(": ")
                frame[key] = value
    return events


def test_event_stream_is_ordered_ends_with_the_job_and_resumes(api: httpx.Client) -> None:
    job = api.post("/api/v1/jobs", json=train_body(epochs=2, log_every_steps=5)).json()
    live = _sse(api, job["id"])  # subscribed while the job runs; returns when it ends
    seqs = [seq for seq, _, _ in live]
    assert seqs == list(range(1, len(seqs) + 1))
    kinds = [kind for _, kind, _ in live]
    assert kinds[0] == "status" and "step" in kinds and kinds.count("epoch") == 2
    assert live[-1][1] == "status" and live[-1][2]["status"] == "succeeded"
    step = next(data for _, kind, data in live if kind == "step")
    assert {"epoch", "step", "loss", "samples_per_s"} <= set(step)
    listed = api.get(f"/api/v1/jobs/{job['id']}/events").json()["items"]
    assert [e["seq"] for e in listed] == seqs
    # A client reconnecting with Last-Event-ID gets exactly what it had not seen.
    cut = len(seqs) // 2
    assert [seq for seq, _, _ in _sse(api, job["id"], last=cut)] == seqs[cut:]


def test_cancel_stops_a_running_job(api: httpx.Client) -> None:
    job = api.post("/api/v1/jobs", json=train_body(epochs=500)).json()
    wait_event(api, job["id"], "step")
    reply = api.post(f"/api/v1/jobs/{job['id']}/cancel")
    assert reply.status_code == 200
    done = wait_for(api, job["id"], timeout=30)
    assert done["status"] == "cancelled"
    assert api.get("/api/v1/models/digits-mlp").status_code in (200, 404)
    assert api.get("/api/v1/models/digits-mlp/versions").json().get("total", 0) == 0
    # Cancelling a finished job changes nothing.
    assert api.post(f"/api/v1/jobs/{job['id']}/cancel").json()["status"] == "cancelled"


def test_a_crashing_worker_fails_only_its_job(server: LiveServer, api: httpx.Client) -> None:
    from modelyard.db.tables import Job

    doomed = api.post("/api/v1/jobs", json=train_body(epochs=500, output_model="a")).json()
    other = api.post("/api/v1/jobs", json=train_body(epochs=2, output_model="b")).json()
    wait_event(api, doomed["id"], "step")
    with server.platform.db.session() as session:
        runner = session.get_one(Job, doomed["id"]).runner or ""
    os.kill(int(runner.rsplit("/", 1)[1]), signal.SIGKILL)
    failed = wait_for(api, doomed["id"])
    assert failed["status"] == "failed"
    assert "signal 9" in failed["error"]
    assert wait_for(api, other["id"])["status"] == "succeeded"
    assert api.get("/healthz").status_code == 200


def test_bad_specs_are_refused_before_queuing(api: httpx.Client) -> None:
    cases = [
        (train_body(optimizer={"name": "adamax", "lr": 0.1}), "optimizer.name"),
        (
            train_body(model={"spec": {**train_body()["model"]["spec"], "input_shape": [65]}}),
            "input_shape",
        ),
        (
            train_body(model={"spec": {**train_body()["model"]["spec"], "num_outputs": 5}}),
            "num_outputs",
        ),
        (train_body(dataset="nope"), "dataset"),
        (train_body(epochs=0), "epochs"),
        (train_body(model={"spec": {"arch": "resnet"}}), "arch"),
        ({"type": "paint"}, "type"),
        ({"model_name": "mlp", "data": "digits", "learning_rate": -1}, "learning_rate"),
    ]
    for body, word in cases:
        reply = api.post("/api/v1/jobs", json=body)
        assert reply.status_code == 422, (body, reply.text)
        assert word in reply.json()["detail"], (word, reply.json()["detail"])
    assert api.get("/api/v1/jobs").json()["total"] == 0


def test_other_keys_cannot_see_or_cancel_a_job(api: httpx.Client) -> None:
    job = api.post("/api/v1/jobs", json=train_body(epochs=1)).json()
    mallory = user_client(api, "mallory", ["read", "write"])
    for method, path in [("GET", ""), ("POST", "/cancel"), ("GET", "/events"), ("GET", "/logs")]:
        assert mallory.request(method, f"/api/v1/jobs/{job['id']}{path}").status_code == 404
    assert mallory.get("/api/v1/jobs").json()["total"] == 0
    # Mallory cannot train on the admin's private data set either.
    reply = mallory.post("/api/v1/jobs", json=train_body())
    assert reply.status_code == 422 and "dataset" in reply.json()["detail"]
    assert wait_for(api, job["id"])["status"] == "succeeded"
