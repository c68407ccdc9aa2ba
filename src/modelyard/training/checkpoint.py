"""Checkpoints as bytes without pickle: tensors in safetensors, everything else in JSON.

A checkpoint is a nested dict (model and optimizer state dicts, RNG states, counters,
history). Its tensors are stored as safetensors entries; the rest becomes JSON in the
file's metadata, with each tensor replaced by a reference. Tuples and dicts with
non-string keys (an optimizer's per-parameter state) are tagged so they come back as
they were. Loading never runs code.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

import numpy as np
import safetensors.torch
import torch
from safetensors import SafetensorError

from modelyard.errors import InvalidInput

FORMAT = "modelyard.checkpoint/1"
_TREE_KEY = "modelyard.checkpoint"
_TENSOR, _NDARRAY, _TUPLE, _ITEMS = "__tensor__", "__ndarray__", "__tuple__", "__items__"


class _Encoder:
    def __init__(self) -> None:
        self.tensors: dict[str, torch.Tensor] = {}

    def _store(self, tensor: torch.Tensor) -> str:
        name = f"t{len(self.tensors)}"
        # A copy on the CPU: safetensors refuses tensors that share memory.
        self.tensors[name] = tensor.detach().to("cpu", copy=True).contiguous()
        return name

    def encode(self, value: Any, path: str) -> Any:
        if isinstance(value, torch.Tensor):
            return {_TENSOR: self._store(value)}
        if isinstance(value, np.ndarray):
            return {_NDARRAY: self._store(torch.from_numpy(np.ascontiguousarray(value)))}
        if isinstance(value, np.generic):
            return value.item()
        if value is None or isinstance(value, bool | int | float | str):
            return value
        if isinstance(value, tuple):
            return {_TUPLE: [self.encode(v, f"{path}[{i}]") for i, v in enumerate(value)]}
        if isinstance(value, list):
            return [self.encode(v, f"{path}[{i}]") for i, v in enumerate(value)]
        if isinstance(value, Mapping):
            if all(isinstance(k, str) for k in value):
                return {k: self.encode(v, f"{path}.{k}") for k, v in value.items()}
            return {
                _ITEMS: [
                    [self.encode(k, path), self.encode(v, f"{path}[{k!r}]")]
                    for k, v in value.items()
                ]
            }
        raise TypeError(f"checkpoint: cannot store {type(value).__name__} at {path}")


def _decode(value: Any, tensors: Mapping[str, torch.Tensor]) -> Any:
    if isinstance(value, list):
        return [_decode(v, tensors) for v in value]
    if not isinstance(value, dict):
        return value
    if len(value) == 1:
        ((tag, inner),) = value.items()
        if tag == _TENSOR:
            return tensors[inner]
        if tag == _NDARRAY:
            return tensors[inner].numpy()
        if tag == _TUPLE:
            return tuple(_decode(v, tensors) for v in inner)
        if tag == _ITEMS:
            return {_decode(k, tensors): _decode(v, tensors) for k, v in inner}
    return {k: _decode(v, tensors) for k, v in value.items()}


def checkpoint_to_bytes(state: Mapping[str, Any]) -> bytes:
    """Serialize a checkpoint dict; :func:`checkpoint_from_bytes` reverses it."""
    encoder = _Encoder()
    tree = encoder.encode(state, "state")
    metadata = {"format": FORMAT, _TREE_KEY: json.dumps(tree, allow_nan=True)}
    return safetensors.torch.save(encoder.tensors, metadata=metadata)


def checkpoint_from_bytes(data: bytes) -> dict[str, Any]:
    """The checkpoint dict :func:`checkpoint_to_bytes` wrote; InvalidInput if it is not one."""
    try:
        size = int.from_bytes(data[:8], "little")
        header = json.loads(data[8 : 8 + size])
        metadata = header.get("__metadata__") or {}
        if metadata.get("format") != FORMAT:
            raise ValueError("no modelyard checkpoint metadata")
        tree = json.loads(metadata[_TREE_KEY])
        tensors = safetensors.torch.load(data)
        decoded = _decode(tree, tensors)
    except (ValueError, KeyError, TypeError, SafetensorError, UnicodeDecodeError) as exc:
        raise InvalidInput(f"checkpoint: not a readable Modelyard checkpoint ({exc})") from None
    if not isinstance(decoded, dict):
        raise InvalidInput("checkpoint: not a readable Modelyard checkpoint")
    return decoded
