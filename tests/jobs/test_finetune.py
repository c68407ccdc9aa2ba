"""Fine-tuning through the API: train further from a version, freeze layers, new head."""

from __future__ import annotations

from pathlib import Path

import httpx
import numpy as np

from tests.jobs.conftest import train_body, wait_for


def _weights(api: httpx.Client, model: str, version: int, path: Path) -> dict[str, np.ndarray]:
    from safetensors.numpy import load_file

    path.write_bytes(api.get(f"/api/v1/models/{model}/versions/{version}/download").content)
    return load_file(str(path))


def test_fine_tune_with_frozen_layers_and_a_new_head(api: httpx.Client, tmp_path: Path) -> None:
    base = api.post("/api/v1/jobs", json=train_body(output_model="base")).json()
    assert wait_for(api, base["id"])["status"] == "succeeded"

    # Binary task on the same images: is the digit >= 5? Same features, new labels.
    from sklearn.datasets import load_digits

    digits = load_digits()
    npz = tmp_path / "five.npz"
    np.savez(npz, x=digits.data.astype(np.float32), y=(digits.target >= 5).astype(np.int64))
    api.post(
        "/api/v1/datasets",
        params={"name": "five", "label": "y", "filename": "f.npz"},
        content=npz.read_bytes(),
    ).raise_for_status()

    body = train_body(
        model={"from": "base", "version": "1", "num_outputs": 2},
        dataset="five",
        freeze=["layers.0"],
        output_model="base",
    )
    reply = api.post("/api/v1/jobs", json=body)
    assert reply.status_code == 201, reply.text
    assert reply.json()["spec"]["arch_spec"]["num_outputs"] == 2
    done = wait_for(api, reply.json()["id"])
    assert done["status"] == "succeeded", done["error"]
    assert done["result"]["version"] == 2
    assert done["result"]["metrics"]["val"]["accuracy"] > 0.8

    before = _weights(api, "base", 1, tmp_path / "v1.safetensors")
    after = _weights(api, "base", 2, tmp_path / "v2.safetensors")
    np.testing.assert_array_equal(before["layers.0.linear.weight"], after["layers.0.linear.weight"])
    assert after["head.weight"].shape == (2, 32) and before["head.weight"].shape == (10, 32)
    version = api.get("/api/v1/models/base/versions/2").json()
    assert version["lineage"]["parent_version"] == 1 and version["spec"]["num_outputs"] == 2


def test_fine_tuning_a_non_catalog_version_is_refused(api: httpx.Client, tmp_path: Path) -> None:
    import torch

    module = torch.jit.script(torch.nn.Linear(64, 10))
    path = tmp_path / "m.pt"
    torch.jit.save(module, str(path))
    api.post("/api/v1/models", json={"name": "scripted"}).raise_for_status()
    api.post(
        "/api/v1/models/scripted/versions", params={"filename": "m.pt"}, content=path.read_bytes()
    ).raise_for_status()
    reply = api.post("/api/v1/jobs", json=train_body(model={"from": "scripted"}))
    assert reply.status_code == 422
    assert "model.from" in reply.json()["detail"] and "torchscript" in reply.json()["detail"]
