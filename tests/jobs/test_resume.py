"""kill -9 of the server mid-training: on restart the job resumes from its last checkpoint
and ends with exactly the weights of an uninterrupted run."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from tests.jobs.conftest import train_body, wait_event, wait_for
from tests.support.data import digits_npz
from tests.support.process import server_process
from tests.support.server import ADMIN_KEY

SPEC = {"arch": "mlp", "input_shape": [64], "hidden": [256, 256], "dropout": 0.1, "num_outputs": 10}
ENV = {"MODELYARD_EXECUTOR_SLOTS": "1", "MODELYARD_JOB_HEARTBEAT_TIMEOUT_S": "5"}


def _weights(api: httpx.Client, model: str, dest: Path) -> dict[str, object]:
    from safetensors.torch import load_file

    dest.write_bytes(api.get(f"/api/v1/models/{model}/versions/1/download").content)
    return dict(load_file(str(dest)))


@pytest.mark.slow
def test_kill_9_mid_training_resumes_to_identical_weights(tmp_path: Path) -> None:
    import torch

    data_dir, log = tmp_path / "data", tmp_path / "server.log"
    body = train_body(
        model={"spec": SPEC},
        epochs=30,
        batch_size=32,
        checkpoint_every_steps=40,
        optimizer={"name": "sgd", "lr": 0.05, "momentum": 0.9},
    )
    auth = {"Authorization": f"Bearer {ADMIN_KEY}"}
    with server_process(data_dir, log, **ENV) as srv:
        api = httpx.Client(base_url=srv.url, headers=auth, timeout=60)
        npz = digits_npz(tmp_path / "digits.npz")
        api.post(
            "/api/v1/datasets",
            params={"name": "digits", "label": "y", "filename": "d.npz"},
            content=npz.read_bytes(),
        ).raise_for_status()
        whole = api.post("/api/v1/jobs", json={**body, "output_model": "whole"}).json()
        assert wait_for(api, whole["id"])["status"] == "succeeded"

        broken = api.post("/api/v1/jobs", json={**body, "output_model": "broken"}).json()
        wait_event(api, broken["id"], "checkpoint")
        srv.kill9()
    with server_process(data_dir, log, **ENV) as srv:
        api = httpx.Client(base_url=srv.url, headers=auth, timeout=60)
        done = wait_for(api, broken["id"])
        assert done["status"] == "succeeded", done["error"]
        assert done["attempt"] == 2
        events = api.get(f"/api/v1/jobs/{broken['id']}/events", params={"limit": 500}).json()
        kinds = [e["type"] for e in events["items"]]
        assert "resumed" in kinds
        resumed = next(e for e in events["items"] if e["type"] == "resumed")
        assert resumed["data"]["step"] > 0
        a = _weights(api, "whole", tmp_path / "a.safetensors")
        b = _weights(api, "broken", tmp_path / "b.safetensors")
    assert a.keys() == b.keys()
    for name in a:
        assert torch.equal(a[name], b[name]), name  # type: ignore[arg-type]
