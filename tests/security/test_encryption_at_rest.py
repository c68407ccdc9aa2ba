"""Encryption at rest holds through training, serving and a kill -9: after a restart, no file
under the data dir or the server's temporary dir holds the training data's or the model's
plaintext bytes."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest

from tests.jobs.conftest import train_body, wait_event, wait_for
from tests.storage.crashes import files_under, find_needles, tracked_server
from tests.support.data import digits_npz
from tests.support.server import ADMIN_KEY

KEY = "5a" * 32
LONG = {"arch": "mlp", "input_shape": [64], "hidden": [128], "num_outputs": 10}


def _data_needles(x: np.ndarray) -> dict[str, bytes]:
    """Rows of the training data as they sit in the upload and in its canonical form."""
    return {f"data row {i}": x[i].tobytes() for i in (100, 700, 1300)}


def _weight_needles(api: httpx.Client, model: str, dest: Path) -> dict[str, bytes]:
    """A slice of the raw bytes of each weight matrix of the model's version 1."""
    from safetensors.numpy import load_file

    reply = api.get(f"/api/v1/models/{model}/versions/1/download")
    reply.raise_for_status()
    dest.write_bytes(reply.content)
    needles = {}
    for name, tensor in load_file(str(dest)).items():
        if tensor.ndim == 2:
            flat = tensor.reshape(-1)
            middle = flat.size // 2
            needles[f"{model}:{name}"] = flat[middle : middle + 32].tobytes()
    assert len(needles) >= 2
    return needles


def _predict(api: httpx.Client, name: str, x: np.ndarray) -> np.ndarray:
    reply = api.post(f"/api/v1/deployments/{name}/predict", json={"inputs": x.tolist()})
    assert reply.status_code == 200, reply.text
    classes: np.ndarray = np.asarray(reply.json()["outputs"]["output"]).argmax(axis=1)
    return classes


def _job(api: httpx.Client, **overrides: Any) -> str:
    reply = api.post("/api/v1/jobs", json=train_body(**overrides))
    assert reply.status_code in (200, 201, 202), reply.text
    job_id: str = reply.json()["id"]
    return job_id


@pytest.mark.slow
@pytest.mark.parametrize("with_workers", [False, True], ids=["server", "server-and-workers"])
def test_no_plaintext_on_disk_after_training_serving_and_a_kill_9(
    tmp_path: Path, short_tmp: Path, with_workers: bool
) -> None:
    from sklearn.datasets import load_digits

    digits = load_digits()
    x, labels = digits.data.astype(np.float32), digits.target
    data_dir, system_tmp, log = tmp_path / "data", short_tmp, tmp_path / "log"
    env = {
        "MODELYARD_ENCRYPTION_KEY": KEY,
        "MODELYARD_EXECUTOR_SLOTS": "1",
        "MODELYARD_JOB_HEARTBEAT_TIMEOUT_S": "5",
        "TMPDIR": str(system_tmp),
    }
    auth = {"Authorization": f"Bearer {ADMIN_KEY}"}
    data_needles = _data_needles(x)
    npz = digits_npz(tmp_path / "digits.npz")
    assert find_needles([npz.parent], data_needles)  # the needles are what the upload holds

    with tracked_server(data_dir, log, **env) as srv:
        api = httpx.Client(base_url=srv.url, headers=auth, timeout=120)
        api.post(
            "/api/v1/datasets",
            params={"name": "digits", "label": "y", "filename": "digits.npz"},
            content=npz.read_bytes(),
        ).raise_for_status()
        short = _job(api, output_model="digits", epochs=3)
        assert wait_for(api, short)["status"] == "succeeded"
        reply = api.post("/api/v1/deployments", json={"name": "digits", "model": "digits"})
        assert reply.status_code == 201, reply.text
        before = _predict(api, "digits", x[:200])
        assert np.mean(before == labels[:200]) > 0.8

        long = _job(
            api,
            model={"spec": LONG},
            output_model="digits-long",
            epochs=6,
            batch_size=32,
            checkpoint_every_steps=10,
        )
        wait_event(api, long, "checkpoint")
        srv.crash(with_workers=with_workers)

    if with_workers:
        # What the killed worker was training on is still there, in its own folder. (A worker
        # that outlives its server for a moment removes its files itself, or is killed.)
        left = find_needles([data_dir / "tmp"], data_needles)
        assert left and all("proc-" in path.parent.parent.parent.name for _, path in left)

    with tracked_server(data_dir, log, **env) as srv:
        api = httpx.Client(base_url=srv.url, headers=auth, timeout=120)
        done = wait_for(api, long)
        assert done["status"] == "succeeded" and done["attempt"] == 2, done
        assert (_predict(api, "digits", x[:200]) == before).all()
        reply = api.post("/api/v1/deployments", json={"name": "long", "model": "digits-long"})
        assert reply.status_code == 201, reply.text
        assert np.mean(_predict(api, "long", x[:200]) == labels[:200]) > 0.8
        assert api.delete("/api/v1/deployments/long").status_code == 204

        needles = {
            **data_needles,
            **_weight_needles(api, "digits", tmp_path / "digits.safetensors"),
            **_weight_needles(api, "digits-long", tmp_path / "long.safetensors"),
        }
        assert {name for name, _ in find_needles([tmp_path], needles)} == set(needles)

        assert files_under(data_dir / "blobs")
        assert find_needles([data_dir, system_tmp], needles) == []
