"""Small models saved the way a user would save them: TorchScript and ONNX files, pushed
through the API like ``modelyard models push`` does."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import httpx


def mlp(inputs: int = 64, outputs: int = 10, seed: int = 0) -> Any:
    import torch

    torch.manual_seed(seed)
    return torch.nn.Sequential(
        torch.nn.Linear(inputs, 16), torch.nn.ReLU(), torch.nn.Linear(16, outputs)
    ).eval()


def torchscript_file(tmp: Path, name: str, model: Any, inputs: int = 64) -> Path:
    import torch

    path = tmp / f"{name}.pt"
    traced = torch.jit.trace(model, torch.zeros(1, inputs))  # type: ignore[no-untyped-call]
    torch.jit.save(traced, str(path))  # type: ignore[no-untyped-call]
    return path


def onnx_file(tmp: Path, name: str, model: Any, input_name: str, inputs: int = 64) -> Path:
    """``model`` exported with its input called ``input_name`` (what an exporter or a
    quantizer chooses, not the user)."""
    import torch

    path = tmp / f"{name}.onnx"
    torch.onnx.export(
        model,
        (torch.zeros(1, inputs),),
        str(path),
        input_names=[input_name],
        output_names=["logits"],
        dynamic_axes={input_name: {0: "n"}, "logits": {0: "n"}},
        dynamo=False,
    )
    return path


def push(
    api: httpx.Client, model: str, path: Path, *, signature: Any = None, **params: Any
) -> httpx.Response:
    """``POST /api/v1/models/{model}/versions`` with the file as the body."""
    query = {"filename": path.name, **params}
    if signature is not None:
        query["signature"] = json.dumps(signature)
    return api.post(f"/api/v1/models/{model}/versions", params=query, content=path.read_bytes())


def pushed(api: httpx.Client, model: str, path: Path, **kwargs: Any) -> dict[str, Any]:
    reply = push(api, model, path, **kwargs)
    assert reply.status_code == 201, reply.text
    body: dict[str, Any] = reply.json()
    return body
