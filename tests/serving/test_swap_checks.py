"""A hot swap to a version that takes or returns other tensors is refused unless forced: a
PATCH, an alias move, a canary split, a push that moves ``latest``; a move the server finds
on its own (a job registered the version) is held back. Clients keep working throughout."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import numpy as np

from tests.serving.conftest import forward
from tests.serving.user_models import mlp, onnx_file, push, pushed
from tests.support.server import LiveServer, live_server


def _versions(server: LiveServer, api: httpx.Client, tmp: Path) -> dict[int, Any]:
    """Version 1 takes ``input_layer`` (as Keras names it), version 2 the same model
    re-exported with its input called ``input`` (as a quantizer renamed it)."""
    model = mlp(seed=1)
    pushed(api, "digits", onnx_file(tmp, "v1", model, "input_layer"))
    pushed(api, "digits", onnx_file(tmp, "v2", model, "input"))
    return {1: model, 2: model}


def _triton_infer(server: LiveServer, name: str, input_name: str, x: np.ndarray) -> np.ndarray:
    import tritonclient.http as triton

    client = triton.InferenceServerClient(server.url.removeprefix("http://"))
    tensor = triton.InferInput(input_name, list(x.shape), "FP32")
    tensor.set_data_from_numpy(x)
    headers = {"Authorization": f"Bearer {server.admin_key}"}
    result: np.ndarray = client.infer(name, [tensor], headers=headers).as_numpy("logits")
    return result


def _serving(api: httpx.Client, name: str) -> list[int]:
    return [v["version"] for v in api.get(f"/api/v1/deployments/{name}").json()["versions"]]


def test_patch_to_a_renamed_input_is_refused_unless_forced(
    server: LiveServer, api: httpx.Client, tmp_path: Path
) -> None:
    models = _versions(server, api, tmp_path)
    reply = api.post(
        "/api/v1/deployments", json={"name": "digits", "model": "digits", "version": 1}
    )
    assert reply.status_code == 201, reply.text
    x = np.random.default_rng(0).normal(size=(2, 64)).astype(np.float32)
    np.testing.assert_allclose(
        _triton_infer(server, "digits", "input_layer", x), forward(models[1], x), atol=1e-5
    )

    reply = api.patch("/api/v1/deployments/digits", json={"version": "2"})
    assert reply.status_code == 409, reply.text
    detail = reply.json()["detail"]
    assert "input 'input_layer' is gone and input 'input' is new" in detail and "force" in detail
    # Nothing changed: the record, what is served, and the running client.
    assert api.get("/api/v1/deployments/digits").json()["spec"]["version"] == "1"
    assert _serving(api, "digits") == [1]
    _triton_infer(server, "digits", "input_layer", x)

    reply = api.patch("/api/v1/deployments/digits", json={"version": "2", "force": True})
    assert reply.status_code == 200, reply.text
    assert reply.json()["versions"][0]["inputs"][0]["name"] == "input"
    assert "force" not in reply.json()["spec"]
    _triton_infer(server, "digits", "input", x)


def test_a_canary_split_between_different_signatures_is_refused(
    server: LiveServer, api: httpx.Client, tmp_path: Path
) -> None:
    _versions(server, api, tmp_path)
    traffic = [{"version": 1, "weight": 90}, {"version": 2, "weight": 10}]
    reply = api.post(
        "/api/v1/deployments", json={"name": "canary", "model": "digits", "traffic": traffic}
    )
    assert reply.status_code == 409 and "version 2: input 'input_layer'" in reply.text
    assert api.get("/api/v1/deployments/canary").status_code == 404
    reply = api.post(
        "/api/v1/deployments", json={"name": "canary", "model": "digits", "version": 1}
    )
    assert reply.status_code == 201
    reply = api.patch("/api/v1/deployments/canary", json={"traffic": traffic})
    assert reply.status_code == 409, reply.text
    assert _serving(api, "canary") == [1]


def test_an_alias_move_checks_the_deployments_that_follow_it(
    server: LiveServer, api: httpx.Client, tmp_path: Path
) -> None:
    _versions(server, api, tmp_path)
    assert api.put("/api/v1/models/digits/aliases/prod", json={"version": 1}).status_code == 200
    reply = api.post(
        "/api/v1/deployments", json={"name": "web", "model": "digits", "version": "prod"}
    )
    assert reply.status_code == 201, reply.text
    reply = api.put("/api/v1/models/digits/aliases/prod", json={"version": 2})
    assert reply.status_code == 409, reply.text
    assert "deployment 'web': input 'input_layer' is gone" in reply.json()["detail"]
    assert api.get("/api/v1/models/digits/aliases").json() == {"prod": 1}
    # An alias no deployment follows moves freely.
    assert api.put("/api/v1/models/digits/aliases/next", json={"version": 2}).status_code == 200
    reply = api.put("/api/v1/models/digits/aliases/prod", json={"version": 2, "force": True})
    assert reply.status_code == 200, reply.text
    # The deployment swapped before the answer, and records what was forced on it.
    assert _serving(api, "web") == [2]
    assert api.get("/api/v1/deployments/web").json()["spec"]["accepted"] == {"prod": 2}
    x = np.ones((1, 64), dtype=np.float32)
    _triton_infer(server, "web", "input", x)


def test_a_push_that_moves_latest_is_checked_and_a_job_made_version_is_held_back(
    server: LiveServer, api: httpx.Client, tmp_path: Path
) -> None:
    model = mlp(seed=1)
    pushed(api, "digits", onnx_file(tmp_path, "v1", model, "input_layer"))
    reply = api.post("/api/v1/deployments", json={"name": "web", "model": "digits"})
    assert reply.status_code == 201
    renamed = onnx_file(tmp_path, "v2", model, "input")
    reply = push(api, "digits", renamed)
    assert reply.status_code == 409 and "deployment 'web'" in reply.text, reply.text
    assert api.get("/api/v1/models/digits/versions").json()["total"] == 1
    # A compatible version swaps in at once.
    pushed(api, "digits", onnx_file(tmp_path, "v1b", mlp(seed=2), "input_layer"))
    assert _serving(api, "web") == [2]

    # A version registered without the API (as a job does) is found by the reconcile loop,
    # which keeps serving version 2 and says why.
    from modelyard.auth.access import Caller
    from modelyard.registry.service import VersionMeta
    from modelyard.storage.staging import stage_file

    platform = server.platform
    admin = platform.auth.authenticate(server.admin_key)
    assert isinstance(admin, Caller)
    staged = stage_file(renamed, platform.settings.tmp_dir, 1 << 30)
    staged.filename = "model.onnx"
    platform.registry.push_version(admin, "digits", staged, VersionMeta())
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        body = api.get("/api/v1/deployments/web").json()
        if body["error"]:
            break
        time.sleep(0.2)
    assert "version 3: input 'input_layer' is gone" in body["error"], body
    assert body["status"] == "ready" and _serving(api, "web") == [2]
    _triton_infer(server, "web", "input_layer", np.ones((1, 64), dtype=np.float32))
    # Forcing it (no other change) takes the held version.
    reply = api.patch("/api/v1/deployments/web", json={"force": True})
    assert reply.status_code == 200 and _serving(api, "web") == [3], reply.text
    assert reply.json()["error"] is None
    assert reply.json()["spec"]["accepted"] == {"latest": 3}
    # And a forced push swaps too.
    reply = push(api, "digits", onnx_file(tmp_path, "v4", model, "input_layer"), force="true")
    assert reply.status_code == 201 and _serving(api, "web") == [4]


def test_a_forced_move_reaches_every_server_sharing_the_database(
    make_settings: Callable[..., Any], tmp_path: Path
) -> None:
    settings = make_settings()
    with live_server(settings) as first, live_server(settings) as second:
        auth = {"Authorization": f"Bearer {first.admin_key}"}
        one = httpx.Client(base_url=first.url, headers=auth, timeout=120)
        two = httpx.Client(base_url=second.url, headers=auth, timeout=120)
        _versions(first, one, tmp_path)
        assert one.put("/api/v1/models/digits/aliases/prod", json={"version": 1}).is_success
        reply = one.post(
            "/api/v1/deployments", json={"name": "web", "model": "digits", "version": "prod"}
        )
        assert reply.status_code == 201, reply.text
        _wait(lambda: _serving(two, "web") == [1])
        reply = one.put("/api/v1/models/digits/aliases/prod", json={"version": 2, "force": True})
        assert reply.status_code == 200, reply.text
        # The other server takes the forced version too, instead of holding it back.
        _wait(lambda: _serving(two, "web") == [2])
        assert two.get("/api/v1/deployments/web").json()["error"] is None
        _triton_infer(second, "web", "input", np.ones((1, 64), dtype=np.float32))


def _wait(condition: Callable[[], bool], timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.2)
