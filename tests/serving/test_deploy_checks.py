"""What a new user met deploying models: a TorchScript version's metadata, runtimes that do
not fit the format, deployments that cannot load, pipelines whose stages do not fit, and a
pipeline's postprocessing. Driven through a real server with HTTP and tritonclient."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest

from tests.serving.conftest import MLP, deploy, forward, push_catalog
from tests.serving.user_models import mlp, push, pushed, torchscript_file
from tests.support.server import LiveServer

SIGNATURE = {
    "inputs": [{"name": "input", "datatype": "FP32", "shape": [-1, 64]}],
    "outputs": [{"name": "logits", "datatype": "FP32", "shape": [-1, 10]}],
}


def _names(api: httpx.Client) -> list[str]:
    return [d["name"] for d in api.get("/api/v1/deployments").json()["items"]]


def test_torchscript_metadata_says_what_is_missing_and_a_signature_supplies_it(
    server: LiveServer, api: httpx.Client, tmp_path: Path
) -> None:
    import tritonclient.http as triton
    from tritonclient.utils import InferenceServerException

    model = mlp()
    path = torchscript_file(tmp_path, "ts", model)
    pushed(api, "ts", path)
    deploy(api, "ts", model="ts")
    reply = api.get("/v2/models/ts")
    assert reply.status_code == 422, reply.text
    assert "'input'" in reply.json()["error"] and "signature" in reply.json()["error"]
    # It still serves: the module checks its own inputs.
    x = np.random.default_rng(0).normal(size=(3, 64)).astype(np.float32)
    body = {
        "inputs": [
            {"name": "input", "shape": [3, 64], "datatype": "FP32", "data": x.ravel().tolist()}
        ]
    }
    assert api.post("/v2/models/ts/infer", json=body).status_code == 200

    # Pushed with a signature (outputs named by it), the metadata is complete.
    pushed(api, "ts-signed", path, signature=SIGNATURE)
    deploy(api, "ts-signed", model="ts-signed")
    client = triton.InferenceServerClient(server.url.removeprefix("http://"))
    headers = {"Authorization": f"Bearer {server.admin_key}"}
    meta = client.get_model_metadata("ts-signed", headers=headers)
    assert meta["inputs"] == SIGNATURE["inputs"] and meta["outputs"] == SIGNATURE["outputs"]
    tensor = triton.InferInput("input", [3, 64], "FP32")
    tensor.set_data_from_numpy(x)
    result = client.infer("ts-signed", [tensor], headers=headers)
    np.testing.assert_allclose(result.as_numpy("logits"), forward(model, x), atol=1e-5)
    # The declared shape is checked like any other.
    bad = triton.InferInput("input", [1, 63], "FP32")
    bad.set_data_from_numpy(np.zeros((1, 63), dtype=np.float32))
    with pytest.raises(InferenceServerException, match="63"):
        client.infer("ts-signed", [bad], headers=headers)


def test_only_the_inputs_declared_the_outputs_are_measured(
    server: LiveServer, api: httpx.Client, tmp_path: Path
) -> None:
    path = torchscript_file(tmp_path, "ts", mlp(outputs=3))
    signature = {"inputs": [{"name": "input", "datatype": "FP32", "shape": [-1, 64]}]}
    pushed(api, "ts", path, signature=signature)
    deploy(api, "ts", model="ts")
    meta = api.get("/v2/models/ts").json()
    assert meta["outputs"] == [{"name": "output0", "datatype": "FP32", "shape": [-1, 3]}]


def test_a_signature_that_contradicts_the_file_is_refused(
    api: httpx.Client, tmp_path: Path
) -> None:
    path = torchscript_file(tmp_path, "ts", mlp())
    wrong_name = {"inputs": [{"name": "x", "datatype": "FP32", "shape": [-1, 64]}]}
    reply = push(api, "ts", path, signature=wrong_name)
    assert reply.status_code == 422 and "'input'" in reply.text, reply.text
    reply = push(api, "ts", path, signature={"inputs": [{"name": "input", "datatype": "F32"}]})
    assert reply.status_code == 422 and "F32" in reply.text
    # Nothing was registered by the refused pushes.
    assert api.get("/api/v1/models/ts").status_code == 404


def test_runtime_names_match_the_formats_and_a_mismatch_is_refused_before_it_is_stored(
    api: httpx.Client, tmp_path: Path
) -> None:
    pushed(api, "ts", torchscript_file(tmp_path, "ts", mlp()), signature=SIGNATURE)
    reply = api.post("/api/v1/deployments", json={"name": "d", "model": "ts", "runtime": "torch"})
    assert reply.status_code == 422, reply.text
    detail = reply.json()["detail"]
    assert "'torch'" in detail and "torchscript" in detail and "choose auto, torchscript" in detail
    assert api.get("/api/v1/deployments/d").status_code == 404 and _names(api) == []
    # What the error suggests is accepted.
    body = deploy(api, "d", model="ts", runtime="torchscript")
    assert body["versions"][0]["runtime"] == "torchscript"
    reply = api.patch("/api/v1/deployments/d", json={"runtime": "onnxruntime"})
    assert reply.status_code == 422 and "choose auto, torchscript" in reply.text
    assert api.get("/api/v1/deployments/d").json()["spec"]["runtime"] == "torchscript"


def test_a_deployment_that_does_not_load_is_refused_and_leaves_nothing(
    api: httpx.Client, tmp_path: Path
) -> None:
    # A signature that fits the file's names but not the module: loading warms it up.
    lying = {"inputs": [{"name": "input", "datatype": "FP32", "shape": [-1, 63]}]}
    pushed(api, "ts", torchscript_file(tmp_path, "ts", mlp()), signature=lying)
    reply = api.post("/api/v1/deployments", json={"name": "d", "model": "ts"})
    assert reply.status_code == 422, reply.text
    assert "version 1 of 'ts'" in reply.json()["detail"]
    assert _names(api) == []
    assert api.get("/v2/models/d").status_code == 404
    # A working deployment stays as it was when a change to it does not load.
    pushed(api, "ts", torchscript_file(tmp_path, "ts", mlp()), signature=SIGNATURE)
    deploy(api, "d", model="ts", version=2)
    reply = api.patch("/api/v1/deployments/d", json={"version": "1"})
    assert reply.status_code == 422, reply.text
    body = api.get("/api/v1/deployments/d").json()
    assert body["spec"]["version"] == "2" and body["versions"][0]["version"] == 2
    assert body["status"] == "ready" and body["error"] is None
    row = {"inputs": [[0.5] * 64]}
    assert api.post("/api/v1/deployments/d/predict", json=row).status_code == 200


def test_pipeline_stages_that_do_not_fit_are_refused(api: httpx.Client, tmp_path: Path) -> None:
    push_catalog(api, "encoder", MLP, tmp_path)  # 64 → 10
    push_catalog(api, "wide", MLP, tmp_path)  # 64 → 10: cannot take the encoder's 10
    head = {"arch": "mlp", "input_shape": [10], "hidden": [8], "num_outputs": 3}
    push_catalog(api, "head", head, tmp_path)
    for name in ("encoder", "wide", "head"):
        deploy(api, name, model=name)
    reply = api.post("/api/v1/deployments", json={"name": "chain", "pipeline": ["encoder", "wide"]})
    assert reply.status_code == 422, reply.text
    detail = reply.json()["detail"]
    assert "'encoder' output 'output' [-1, 10] does not fit 'wide' input 'input' [-1, 64]" in detail
    assert "chain" not in _names(api)
    deploy(api, "chain", pipeline=["encoder", "head"])
    reply = api.patch("/api/v1/deployments/chain", json={"pipeline": ["head", "encoder"]})
    assert reply.status_code == 422 and "'head' output 'output' [-1, 3]" in reply.text
    assert api.get("/api/v1/deployments/chain").json()["spec"]["pipeline"] == ["encoder", "head"]


def test_a_pipelines_postprocess_applies_to_its_answer(api: httpx.Client, tmp_path: Path) -> None:
    first = push_catalog(api, "encoder", MLP, tmp_path)
    head_spec = {"arch": "mlp", "input_shape": [10], "hidden": [8], "num_outputs": 3}
    second = push_catalog(api, "head", head_spec, tmp_path)
    deploy(api, "encoder", model="encoder")
    deploy(api, "head", model="head")
    deploy(api, "chain", pipeline=["encoder", "head"], postprocess={"softmax": True, "top_k": 2})
    x = np.random.default_rng(2).normal(size=(4, 64)).astype(np.float32)
    reply = api.post("/api/v1/deployments/chain/predict", json={"inputs": x.tolist()})
    assert reply.status_code == 200, reply.text
    outputs: dict[str, Any] = reply.json()["outputs"]
    logits = forward(second, forward(first, x))
    np.testing.assert_allclose(outputs["output"], logits, atol=1e-4)
    exp = np.exp(logits - logits.max(axis=1, keepdims=True))
    np.testing.assert_allclose(outputs["probabilities"], exp / exp.sum(1, keepdims=True), atol=1e-5)
    assert np.asarray(outputs["top_k_indices"]).tolist() == np.argsort(-logits, 1)[:, :2].tolist()
    # A postprocess that cannot apply to the last stage's outputs is refused.
    one = {"arch": "mlp", "input_shape": [10], "hidden": [8], "num_outputs": 1}
    push_catalog(api, "score", one, tmp_path)
    deploy(api, "score", model="score")
    reply = api.post(
        "/api/v1/deployments",
        json={"name": "ranked", "pipeline": ["encoder", "score"], "postprocess": {"top_k": 2}},
    )
    assert reply.status_code == 422 and "single column" in reply.text, reply.text
