"""Catalog models registered through the SDK for deployment tests, and their in-process
forward pass to compare served predictions with."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from modelyard.client import Client, NotFoundError

MLP = {"arch": "mlp", "input_shape": [64], "hidden": [32], "num_outputs": 10}


def push_mlp(client: Client, name: str, tmp: Path, seed: int) -> Any:
    """Register a catalog MLP with seeded random weights as the next version; return it."""
    import torch

    from modelyard.nn import build_model, save_weights

    torch.manual_seed(seed)
    model = build_model(MLP).eval()
    path = tmp / f"{name}-{seed}.safetensors"
    save_weights(model, path, spec=MLP)
    try:
        client.models.get(name)
    except NotFoundError:
        client.models.create(name)
    client.models.push(name, path)
    return model


def forward(model: Any, x: np.ndarray) -> np.ndarray:
    """What the model computes for ``x`` in this process."""
    import torch

    with torch.inference_mode():
        out: np.ndarray = model(torch.from_numpy(x)).numpy()
    return out


def rows(n: int, seed: int = 0) -> np.ndarray:
    """``n`` random float32 rows of the MLP's 64 inputs."""
    return np.random.default_rng(seed).normal(size=(n, 64)).astype(np.float32)
