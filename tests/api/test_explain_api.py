"""Explanations over HTTP: /api/v1/deployments/{name}/explain and KServe's
/v1/models/{name}:explain, with the deployment's access rules and the server's bounds."""

from __future__ import annotations

from pathlib import Path

import httpx
import numpy as np
from sklearn.datasets import load_digits

from modelyard.registry.service import VersionMeta
from modelyard.storage.staging import stage_file
from tests.api.conftest import user_client
from tests.serving.conftest import deploy, push_catalog
from tests.support.data import iris_csv, mlp_safetensors
from tests.support.server import LiveServer

MLP = {"arch": "mlp", "input_shape": [64], "hidden": [32], "num_outputs": 10}
IRIS = {"arch": "mlp", "input_shape": [4], "hidden": [8], "num_outputs": 3}


def test_explanations_on_torch_and_onnx_and_their_bounds(
    admin: httpx.Client, tmp_path: Path
) -> None:
    push_catalog(admin, "digits", MLP, tmp_path)
    deploy(admin, "d-torch", model="digits", runtime="torch")
    deploy(admin, "d-onnx", model="digits", runtime="onnxruntime")
    x = load_digits().data[:3].astype(np.float32)

    reply = admin.post(
        "/api/v1/deployments/d-torch/explain", json={"inputs": x.tolist(), "n_steps": 128}
    )
    assert reply.status_code == 200, reply.text
    body = reply.json()
    attributions = np.asarray(body["attributions"])
    assert (body["method"], body["output"], attributions.shape) == (
        "integrated_gradients",
        "output",
        x.shape,
    )
    scores = np.asarray(
        admin.post("/api/v1/deployments/d-torch/predict", json={"inputs": x.tolist()}).json()[
            "outputs"
        ]["output"]
    )
    blank = np.asarray(
        admin.post(
            "/api/v1/deployments/d-torch/predict", json={"inputs": np.zeros_like(x).tolist()}
        ).json()["outputs"]["output"]
    )
    rows = np.arange(len(x))
    assert body["target"] == scores.argmax(axis=1).tolist()
    gap = scores[rows, body["target"]] - blank[rows, body["target"]]
    delta = np.asarray(body["convergence_delta"])
    assert np.all(np.abs(delta) < 0.01)
    assert np.all(np.abs(attributions.sum(axis=1) - gap) <= np.abs(delta) + 1e-4)
    assert body["feature_names"] is None  # not trained on a table

    occlusion = {"inputs": x.tolist(), "method": "occlusion", "window": 2, "target": 4}
    on_torch = admin.post("/api/v1/deployments/d-torch/explain", json=occlusion).json()
    on_onnx = admin.post("/api/v1/deployments/d-onnx/explain", json=occlusion).json()
    assert on_onnx["target"] == [4, 4, 4]
    assert np.allclose(on_torch["attributions"], on_onnx["attributions"], atol=1e-4)

    # KServe's v1 shape: one explanation per instance, problem+json errors (not OpenAI's).
    kserve = admin.post(
        "/v1/models/d-onnx:explain", json={"instances": x.tolist(), "method": "occlusion"}
    )
    assert kserve.status_code == 200, kserve.text
    explanations = kserve.json()["explanations"]
    assert len(explanations) == 3 and np.asarray(explanations[0]["attributions"]).shape == (64,)
    assert admin.get("/v1/models").status_code == 200  # the OpenAI list is still there

    gradients_on_onnx = admin.post(
        "/api/v1/deployments/d-onnx/explain", json={"inputs": [[0] * 64]}
    )
    assert gradients_on_onnx.status_code == 422
    assert "occlusion or kernel_shap" in gradients_on_onnx.json()["detail"]
    for path, key in (
        ("/api/v1/deployments/d-torch/explain", "inputs"),
        ("/v1/models/d-torch:explain", "instances"),
    ):
        huge = admin.post(path, json={key: x.tolist(), "n_steps": 10**6})
        assert huge.status_code == 422, huge.text
        assert huge.headers["content-type"].startswith("application/problem+json")
        assert huge.json()["detail"].startswith("n_steps:")


def test_a_caller_without_access_gets_404(admin: httpx.Client, tmp_path: Path) -> None:
    push_catalog(admin, "digits", MLP, tmp_path)
    deploy(admin, "private", model="digits", runtime="torch")
    with user_client(admin, "eve", ["read", "infer"]) as eve:
        for path, key in (
            ("/api/v1/deployments/private/explain", "inputs"),
            ("/v1/models/private:explain", "instances"),
        ):
            reply = eve.post(path, json={key: [[0.0] * 64], "method": "occlusion"})
            assert reply.status_code == 404, reply.text
            assert "attributions" not in reply.text and "explanations" not in reply.text


def test_a_table_model_names_its_features(
    server: LiveServer, admin: httpx.Client, tmp_path: Path
) -> None:
    csv = iris_csv(tmp_path / "iris.csv")
    reply = admin.post(
        "/api/v1/datasets",
        params={"name": "iris", "label": "species", "filename": "iris.csv"},
        content=csv.read_bytes(),
    )
    assert reply.status_code == 201, reply.text
    # A version trained on the table, registered as a train job registers its result.
    weights = mlp_safetensors(tmp_path / "iris.safetensors", IRIS)
    admin.post("/api/v1/models", json={"name": "iris-mlp"}).raise_for_status()
    platform = server.platform
    staged = stage_file(weights, platform.settings.tmp_dir, 1 << 30)
    staged.filename = "model.safetensors"
    platform.registry.push_version(
        platform.auth.authenticate(server.admin_key),
        "iris-mlp",
        staged,
        VersionMeta(
            format="safetensors",
            spec=IRIS,
            params={"label": "species"},
            dataset_id=reply.json()["id"],
        ),
    )
    deploy(admin, "iris", model="iris-mlp", runtime="onnxruntime")
    answer = admin.post(
        "/api/v1/deployments/iris/explain",
        json={"inputs": [[5.1, 3.5, 1.4, 0.2]], "method": "kernel_shap", "n_samples": 64},
    )
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert body["feature_names"] == ["sepal_length", "sepal_width", "petal_length", "petal_width"]
    assert np.asarray(body["attributions"]).shape == (1, 4)
