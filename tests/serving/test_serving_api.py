"""Deployments through a real server: Open Inference Protocol v2 (checked with the real
tritonclient), plain JSON, errors, overload, canary, pipelines, hot swap, restarts."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest

from tests.api.conftest import user_client
from tests.serving.conftest import CNN, MLP, deploy, forward, push_catalog, push_onnx
from tests.support.server import LiveServer, live_server


def _triton(server: LiveServer) -> Any:
    import tritonclient.http as triton

    client = triton.InferenceServerClient(server.url.removeprefix("http://"))
    return triton, client


def _headers(server: LiveServer) -> dict[str, str]:
    return {"Authorization": f"Bearer {server.admin_key}"}


@pytest.mark.parametrize("binary", [False, True], ids=["json", "binary"])
def test_tritonclient_gets_what_the_model_computes(
    server: LiveServer, api: httpx.Client, tmp_path: Path, binary: bool
) -> None:
    mlp = push_catalog(api, "mlp", MLP, tmp_path)
    cnn = push_catalog(api, "cnn", CNN, tmp_path)
    onnx_model = push_onnx(api, "onnx-mlp", tmp_path)
    deploy(api, "mlp", model="mlp")
    deploy(api, "cnn", model="cnn")
    deploy(api, "onnx", model="onnx-mlp", runtime="onnxruntime")
    triton, client = _triton(server)
    headers = _headers(server)
    assert client.is_server_live() and client.is_server_ready(headers=headers)
    rng = np.random.default_rng(0)
    cases = [
        ("mlp", mlp, "input", "output", (5, 64)),
        ("cnn", cnn, "input", "output", (3, 1, 8, 8)),
        ("onnx", onnx_model, "x", "logits", (4, 64)),
    ]
    for name, model, in_name, out_name, shape in cases:
        assert client.is_model_ready(name, headers=headers)
        meta = client.get_model_metadata(name, headers=headers)
        assert meta["inputs"][0]["name"] == in_name
        x = rng.normal(size=shape).astype(np.float32)
        tensor = triton.InferInput(in_name, list(shape), "FP32")
        tensor.set_data_from_numpy(x, binary_data=binary)
        wanted = [triton.InferRequestedOutput(out_name, binary_data=binary)]
        result = client.infer(name, [tensor], outputs=wanted, headers=headers)
        np.testing.assert_allclose(result.as_numpy(out_name), forward(model, x), atol=1e-4)
        # The same through plain JSON (what curl sends).
        body = {
            "inputs": [
                {
                    "name": in_name,
                    "shape": list(shape),
                    "datatype": "FP32",
                    "data": x.ravel().tolist(),
                }
            ]
        }
        reply = api.post(f"/v2/models/{name}/infer", json=body)
        assert reply.status_code == 200, reply.text
        out = reply.json()["outputs"][0]
        got = np.asarray(out["data"], dtype=np.float32).reshape(out["shape"])
        np.testing.assert_allclose(got, forward(model, x), atol=1e-4)
    stats = client.get_inference_statistics("mlp", headers=headers)
    assert stats["model_stats"][0]["inference_stats"]["success"]["count"] >= 2


def test_simple_predict_and_postprocessing(api: httpx.Client, tmp_path: Path) -> None:
    model = push_catalog(api, "mlp", MLP, tmp_path)
    deploy(api, "mlp", model="mlp", postprocess={"softmax": True, "top_k": 3})
    x = np.random.default_rng(1).normal(size=(2, 64)).astype(np.float32)
    reply = api.post("/api/v1/deployments/mlp/predict", json={"inputs": x.tolist()})
    assert reply.status_code == 200, reply.text
    body = reply.json()
    assert body["model_version"] == 1
    logits = forward(model, x)
    np.testing.assert_allclose(body["outputs"]["output"], logits, atol=1e-4)
    probs = np.asarray(body["outputs"]["probabilities"])
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, atol=1e-5)
    assert np.asarray(body["outputs"]["top_k_indices"])[:, 0].tolist() == logits.argmax(1).tolist()


def test_bad_requests_get_named_4xx_and_serving_goes_on(api: httpx.Client, tmp_path: Path) -> None:
    model = push_catalog(api, "mlp", MLP, tmp_path)
    deploy(api, "mlp", model="mlp")

    def infer(body: Any, **kw: Any) -> httpx.Response:
        return api.post("/v2/models/mlp/infer", json=body, **kw)

    good = {"inputs": [{"name": "input", "shape": [1, 64], "datatype": "FP32", "data": [0.5] * 64}]}
    wrong_shape = {
        "inputs": [{"name": "input", "shape": [1, 63], "datatype": "FP32", "data": [0.5] * 63}]
    }
    reply = infer(wrong_shape)
    assert reply.status_code == 422 and "input" in reply.text and "63" in reply.text
    wrong_count = {
        "inputs": [{"name": "input", "shape": [1, 64], "datatype": "FP32", "data": [0.5] * 60}]
    }
    assert infer(wrong_count).status_code == 422
    wrong_type = {
        "inputs": [{"name": "input", "shape": [1, 64], "datatype": "BYTES", "data": ["a"] * 64}]
    }
    assert 400 <= infer(wrong_type).status_code < 500
    nan = {
        "inputs": [
            {
                "name": "input",
                "shape": [1, 64],
                "datatype": "FP32",
                "data": [float("nan")] + [0.5] * 63,
            }
        ]
    }
    reply = api.post(
        "/v2/models/mlp/infer",
        content=json.dumps(nan).encode(),
        headers={"Content-Type": "application/json"},
    )  # NaN, as Python writes it
    assert reply.status_code == 422 and "nan" in reply.text.lower()
    reply = api.post(
        "/v2/models/mlp/infer", content=b"{not json", headers={"Content-Type": "application/json"}
    )
    assert reply.status_code in (400, 422)
    reply = api.post("/v2/models/mlp/infer", content=b"0" * (65 * 1024 * 1024))
    assert reply.status_code == 413
    assert api.post("/v2/models/nope/infer", json=good).status_code == 404
    assert api.post("/v2/models/mlp/versions/7/infer", json=good).status_code == 404
    reply = infer(good)
    assert reply.status_code == 200
    expected = forward(model, np.full((1, 64), 0.5, dtype=np.float32))
    np.testing.assert_allclose(reply.json()["outputs"][0]["data"], expected.ravel(), atol=1e-4)


def test_overload_answers_429_and_deadlines_504(api: httpx.Client, tmp_path: Path) -> None:
    # A model slow enough (about 70 MB of weights read per batch) that a burst queues up
    # behind the batch that computes.
    big = {"arch": "mlp", "input_shape": [64], "hidden": [4096, 4096], "num_outputs": 10}
    push_catalog(api, "big", big, tmp_path)
    deploy(api, "slow", model="big", max_batch_size=64, max_queue=3)
    deploy(api, "tight", model="big", max_batch_size=1, timeout_ms=1)
    row = {"inputs": [[0.1] * 64]}

    async def burst(name: str, n: int) -> list[httpx.Response]:
        async with httpx.AsyncClient(
            base_url=str(api.base_url), headers=dict(api.headers), timeout=60
        ) as client:
            return await asyncio.gather(
                *[client.post(f"/api/v1/deployments/{name}/predict", json=row) for _ in range(n)]
            )

    replies = asyncio.run(burst("slow", 10))
    codes = sorted(r.status_code for r in replies)
    assert codes.count(200) >= 1 and codes.count(429) >= 1 and set(codes) <= {200, 429}
    rejected = next(r for r in replies if r.status_code == 429)
    assert rejected.headers["retry-after"] == "1"
    assert rejected.headers["content-type"] == "application/problem+json"
    # One row per batch and a 1 ms deadline: the requests behind the first one expire.
    replies = asyncio.run(burst("tight", 10))
    codes = sorted(r.status_code for r in replies)
    assert codes.count(504) >= 1 and set(codes) <= {200, 504}, codes


def test_canary_split_and_per_version_metrics(
    server: LiveServer, api: httpx.Client, tmp_path: Path
) -> None:
    push_catalog(api, "mlp", MLP, tmp_path, seed=0)
    push_catalog(api, "mlp", MLP, tmp_path, seed=1)
    body = deploy(
        api,
        "canary",
        model="mlp",
        traffic=[{"version": "1", "weight": 80}, {"version": "2", "weight": 20}],
    )
    assert sorted(v["version"] for v in body["versions"]) == [1, 2]
    seen = [
        api.post("/api/v1/deployments/canary/predict", json={"inputs": [[0.2] * 64]}).json()[
            "model_version"
        ]
        for _ in range(120)
    ]
    assert seen.count(1) > seen.count(2) > 0
    metrics = api.get("/metrics").text  # the admin key sees private deployments' series
    assert (
        'modelyard_inference_requests_total{deployment="canary",outcome="ok",version="2"}'
        in metrics
    )
    assert "modelyard_inference_batch_size_bucket" in metrics
    assert any(f'reason="{why}"' in metrics for why in ("idle", "delay", "full"))
    pinned = api.post(
        "/api/v1/deployments/canary/predict", json={"inputs": [[0.2] * 64], "version": "2"}
    ).json()
    assert pinned["model_version"] == 2


def test_a_lone_request_leaves_at_once_whatever_the_delay(
    api: httpx.Client, tmp_path: Path
) -> None:
    push_catalog(api, "mlp", MLP, tmp_path)
    deploy(api, "lone", model="mlp", max_batch_delay_ms=10_000)
    body = {"inputs": [{"name": "input", "shape": [1, 64], "datatype": "FP32", "data": [0.5] * 64}]}
    for _ in range(3):
        assert api.post("/v2/models/lone/infer", json=body).status_code == 200
    metrics = api.get("/metrics").text
    # Every batch found the worker idle: none waited for more rows.
    assert 'deployment="lone",reason="idle",version="1"} 3.0' in metrics
    for reason in ("delay", "cost", "full"):
        assert f'deployment="lone",reason="{reason}",version="1"}} 0.0' in metrics


def test_stats_count_only_requests_that_got_outputs(api: httpx.Client, tmp_path: Path) -> None:
    push_catalog(api, "mlp", MLP, tmp_path)
    deploy(api, "mlp", model="mlp")

    def infer(shape: list[int], data: list[float]) -> int:
        tensor = {"name": "input", "shape": shape, "datatype": "FP32", "data": data}
        body = json.dumps({"inputs": [tensor]})  # NaN as Python writes it, as tritonclient does
        headers = {"Content-Type": "application/json"}
        return api.post("/v2/models/mlp/infer", content=body, headers=headers).status_code

    assert infer([2, 64], [0.5] * 128) == 200
    assert infer([2, 64], [0.25] * 128) == 200
    assert infer([1, 64], [float("nan")] * 64) == 422  # refused by the model's input checks
    assert infer([1, 63], [0.5] * 63) == 422
    stats = api.get("/v2/models/mlp/stats").json()["model_stats"][0]
    assert stats["inference_count"] == 4  # rows of the two answered requests
    assert stats["execution_count"] == 2
    assert stats["inference_stats"]["success"]["count"] == 2
    assert stats["inference_stats"]["fail"]["count"] == 2
    assert stats["inference_stats"]["compute_infer"]["count"] == 2
    assert api.get("/v2/models/mlp/versions/1/stats").json()["model_stats"] == [stats]
    missing = api.get("/v2/models/mlp/versions/7/stats")
    assert missing.status_code == 404
    assert "version '7'" in missing.json()["detail"]


def test_pipeline_chains_deployments(api: httpx.Client, tmp_path: Path) -> None:
    first = push_catalog(api, "encoder", MLP, tmp_path)
    head_spec = {"arch": "mlp", "input_shape": [10], "hidden": [8], "num_outputs": 3}
    second = push_catalog(api, "head", head_spec, tmp_path)
    deploy(api, "encoder", model="encoder")
    deploy(api, "head", model="head")
    deploy(api, "chain", pipeline=["encoder", "head"])
    x = np.random.default_rng(2).normal(size=(4, 64)).astype(np.float32)
    reply = api.post("/api/v1/deployments/chain/predict", json={"inputs": x.tolist()})
    assert reply.status_code == 200, reply.text
    np.testing.assert_allclose(
        reply.json()["outputs"]["output"], forward(second, forward(first, x)), atol=1e-4
    )
    bad = api.post("/api/v1/deployments", json={"name": "loop", "pipeline": ["loop", "head"]})
    assert bad.status_code == 422


def test_hot_swap_under_load_fails_no_request(api: httpx.Client, tmp_path: Path) -> None:
    v1 = push_catalog(api, "mlp", MLP, tmp_path, seed=0)
    v2 = push_catalog(api, "mlp", MLP, tmp_path, seed=1)
    api.put("/api/v1/models/mlp/aliases/production", json={"version": 1}).raise_for_status()
    deploy(api, "prod", model="mlp", version="production")
    x = np.full((1, 64), 0.3, dtype=np.float32)
    answers = {1: forward(v1, x), 2: forward(v2, x)}

    # Synchronised on observed progress, not on time: the alias moves once 200 answers are
    # in, and the load goes on until 300 answers have come from the new version.
    async def load() -> list[tuple[int, Any]]:
        results: list[tuple[int, Any]] = []
        moved = asyncio.Event()
        after_swap = 0

        async def worker(client: httpx.AsyncClient) -> None:
            nonlocal after_swap
            while after_swap < 300 and len(results) < 20_000:
                r = await client.post(
                    "/api/v1/deployments/prod/predict", json={"inputs": x.tolist()}
                )
                body = r.json()
                results.append((r.status_code, body))
                if len(results) == 200:
                    moved.set()
                if r.status_code == 200 and body["model_version"] == 2:
                    after_swap += 1

        async def swap(client: httpx.AsyncClient) -> None:
            await moved.wait()
            r = await client.put("/api/v1/models/mlp/aliases/production", json={"version": 2})
            assert r.status_code == 200

        async with httpx.AsyncClient(
            base_url=str(api.base_url), headers=dict(api.headers), timeout=60
        ) as client:
            await asyncio.gather(*[worker(client) for _ in range(32)], swap(client))
        return results

    results = asyncio.run(load())
    assert all(code == 200 for code, _ in results), [r for r in results if r[0] != 200][:3]
    versions = [body["model_version"] for _, body in results]
    for _, body in results:
        np.testing.assert_allclose(
            body["outputs"]["output"], answers[body["model_version"]], atol=1e-4
        )
    # Both versions answered while the load ran: the swap happened under it, failing nothing.
    assert versions[0] == 1 and versions.count(2) >= 300 and set(versions) == {1, 2}
    assert api.get("/api/v1/deployments/prod").json()["versions"][0]["version"] == 2
    reply = api.patch("/api/v1/deployments/prod", json={"version": "1"})
    assert reply.status_code == 200 and reply.json()["versions"][0]["version"] == 1


def test_deployments_survive_a_restart(make_settings: Any, tmp_path: Path) -> None:
    settings = make_settings()
    with live_server(settings) as srv:
        api = httpx.Client(base_url=srv.url, headers=_headers(srv), timeout=60)
        model = push_catalog(api, "mlp", MLP, tmp_path)
        deploy(api, "mlp", model="mlp")
    with live_server(settings) as srv:
        api = httpx.Client(base_url=srv.url, headers=_headers(srv), timeout=60)
        body = api.get("/api/v1/deployments/mlp").json()
        assert body["status"] == "ready"
        x = np.ones((1, 64), dtype=np.float32)
        reply = api.post("/api/v1/deployments/mlp/predict", json={"inputs": x.tolist()})
        np.testing.assert_allclose(reply.json()["outputs"]["output"], forward(model, x), atol=1e-4)


def test_inference_needs_the_infer_scope_and_access(
    server: LiveServer, api: httpx.Client, tmp_path: Path
) -> None:
    push_catalog(api, "mlp", MLP, tmp_path)
    deploy(api, "mlp", model="mlp")
    assert httpx.get(server.url + "/v2/health/live").status_code == 200
    assert httpx.get(server.url + "/v2/health/ready").status_code == 200
    assert httpx.get(server.url + "/v2/models/mlp").status_code == 401
    row = {"inputs": [[0.0] * 64]}
    reader = user_client(api, "reader", ["read"])
    assert reader.post("/api/v1/deployments/mlp/predict", json=row).status_code == 403
    caller = user_client(api, "caller", ["infer"])
    assert caller.post("/api/v1/deployments/mlp/predict", json=row).status_code == 404
    acl = {"public": False, "grants": [{"principal": "caller", "permission": "read"}]}
    assert api.put("/api/v1/deployments/mlp/acl", json=acl).status_code == 200
    assert caller.post("/api/v1/deployments/mlp/predict", json=row).status_code == 200


def test_protocol_errors_reach_tritonclient_and_versions_may_be_numbers(
    server: LiveServer, api: httpx.Client, tmp_path: Path
) -> None:
    push_catalog(api, "mlp", MLP, tmp_path)
    deploy(api, "mlp", model="mlp", version=1)
    triton, client = _triton(server)
    from tritonclient.utils import InferenceServerException

    tensor = triton.InferInput("input", [1, 63], "FP32")
    tensor.set_data_from_numpy(np.zeros((1, 63), dtype=np.float32), binary_data=True)
    with pytest.raises(InferenceServerException) as caught:
        client.infer("mlp", [tensor], headers=_headers(server))
    assert "63" in str(caught.value) and "input" in str(caught.value)
    reply = api.patch("/api/v1/deployments/mlp", json={"traffic": [{"version": 1, "weight": 1}]})
    assert reply.status_code == 200, reply.text
