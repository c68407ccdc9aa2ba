"""A live server with registered models to deploy, and their in-process twins."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest

from tests.support.server import LiveServer, live_server

MLP = {"arch": "mlp", "input_shape": [64], "hidden": [32], "num_outputs": 10}
CNN = {"arch": "cnn", "input_shape": [1, 8, 8], "num_outputs": 10}


@pytest.fixture
def server(make_settings: Callable[..., object]) -> Iterator[LiveServer]:
    with live_server(make_settings()) as srv:  # type: ignore[arg-type]
        yield srv


@pytest.fixture
def api(server: LiveServer) -> Iterator[httpx.Client]:
    auth = {"Authorization": f"Bearer {server.admin_key}"}
    with httpx.Client(base_url=server.url, headers=auth, timeout=120) as client:
        yield client


def push_catalog(
    api: httpx.Client, name: str, spec: dict[str, Any], tmp: Path, seed: int = 0
) -> Any:
    """Register a catalog model with seeded random weights; returns the torch module."""
    import torch

    from modelyard.nn import build_model, save_weights

    torch.manual_seed(seed)
    model = build_model(spec).eval()
    path = tmp / f"{name}-{seed}.safetensors"
    save_weights(model, path, spec=spec)
    if api.get(f"/api/v1/models/{name}").status_code == 404:
        api.post("/api/v1/models", json={"name": name}).raise_for_status()
    reply = api.post(
        f"/api/v1/models/{name}/versions", params={"filename": path.name}, content=path.read_bytes()
    )
    reply.raise_for_status()
    return model


def push_onnx(api: httpx.Client, name: str, tmp: Path) -> Any:
    """Register an ONNX model exported from a small torch MLP; returns the torch module."""
    import torch

    torch.manual_seed(3)
    model = torch.nn.Sequential(
        torch.nn.Linear(64, 16), torch.nn.ReLU(), torch.nn.Linear(16, 10)
    ).eval()
    path = tmp / f"{name}.onnx"
    torch.onnx.export(
        model,
        (torch.zeros(1, 64),),
        str(path),
        input_names=["x"],
        output_names=["logits"],
        dynamic_axes={"x": {0: "n"}, "logits": {0: "n"}},
        dynamo=False,
    )
    api.post("/api/v1/models", json={"name": name}).raise_for_status()
    api.post(
        f"/api/v1/models/{name}/versions", params={"filename": path.name}, content=path.read_bytes()
    ).raise_for_status()
    return model


def forward(model: Any, x: np.ndarray) -> np.ndarray:
    import torch

    with torch.inference_mode():
        out: np.ndarray = model(torch.from_numpy(x)).numpy()
    return out


def deploy(api: httpx.Client, name: str, **spec: Any) -> dict[str, Any]:
    reply = api.post("/api/v1/deployments", json={"name": name, **spec})
    assert reply.status_code == 201, reply.text
    body: dict[str, Any] = reply.json()
    assert body["status"] == "ready", body
    return body
