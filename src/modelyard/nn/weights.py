"""Weights as safetensors, with the spec in the file's metadata under ``modelyard.spec``.

Safetensors holds tensors and string metadata only, so loading a file can never run code.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import safetensors.torch
import torch
from safetensors import SafetensorError, safe_open
from torch import nn

from modelyard.errors import InvalidInput
from modelyard.nn.catalog import ArchSpec, build_model, check_weights, parse_spec

SPEC_METADATA_KEY = "modelyard.spec"


def _tensors(model: nn.Module | Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    state = model.state_dict() if isinstance(model, nn.Module) else model
    return {name: t.detach().to("cpu").contiguous() for name, t in state.items()}


def _metadata(spec: ArchSpec | Mapping[str, Any] | None) -> dict[str, str] | None:
    if spec is None:
        return None
    return {SPEC_METADATA_KEY: json.dumps(parse_spec(spec).model_dump(), sort_keys=True)}


def save_weights(
    model: nn.Module | Mapping[str, torch.Tensor],
    path: str | Path,
    spec: ArchSpec | Mapping[str, Any] | None = None,
) -> None:
    """Write ``model``'s state dict to ``path``, with ``spec`` in the metadata if given."""
    safetensors.torch.save_file(_tensors(model), str(path), metadata=_metadata(spec))


def weights_to_bytes(
    model: nn.Module | Mapping[str, torch.Tensor],
    spec: ArchSpec | Mapping[str, Any] | None = None,
) -> bytes:
    """The bytes :func:`save_weights` would write."""
    return safetensors.torch.save(_tensors(model), metadata=_metadata(spec))


def read_weights(path: str | Path) -> tuple[dict[str, torch.Tensor], ArchSpec | None]:
    """The tensors in a safetensors file and the spec in its metadata (None if absent)."""
    try:
        with safe_open(str(path), framework="pt") as handle:
            metadata = handle.metadata() or {}
            state = {name: handle.get_tensor(name) for name in handle.keys()}  # noqa: SIM118
    except (SafetensorError, OSError) as exc:
        raise InvalidInput(f"weights: not a readable safetensors file ({exc})") from None
    return state, _spec_from_metadata(metadata)


def weights_from_bytes(data: bytes) -> tuple[dict[str, torch.Tensor], ArchSpec | None]:
    """Like :func:`read_weights`, for the file's bytes."""
    try:
        state = safetensors.torch.load(data)
    except (SafetensorError, ValueError) as exc:
        raise InvalidInput(f"weights: not a readable safetensors file ({exc})") from None
    return state, _spec_from_metadata(_header_metadata(data))


def _header_metadata(data: bytes) -> dict[str, str]:
    # A safetensors file starts with the little-endian length of its JSON header.
    size = int.from_bytes(data[:8], "little")
    header = json.loads(data[8 : 8 + size])
    metadata = header.get("__metadata__") or {}
    return {str(k): str(v) for k, v in metadata.items()}


def _spec_from_metadata(metadata: Mapping[str, str]) -> ArchSpec | None:
    raw = metadata.get(SPEC_METADATA_KEY)
    if raw is None:
        return None
    try:
        decoded = json.loads(raw)
    except json.JSONDecodeError:
        raise InvalidInput(f"weights: metadata {SPEC_METADATA_KEY} is not JSON") from None
    return parse_spec(decoded)


def load_weights(spec: ArchSpec | Mapping[str, Any] | None, path: str | Path) -> nn.Module:
    """Build ``spec``'s model and load the weights at ``path`` into it.

    With ``spec=None`` the spec stored in the file's metadata is used. The weights are
    checked first, so a mismatch raises InvalidInput naming the tensors.
    """
    state, stored = read_weights(path)
    chosen = spec if spec is not None else stored
    if chosen is None:
        raise InvalidInput(f"spec: none given and the file has no {SPEC_METADATA_KEY} metadata")
    check_weights(chosen, state)
    model = build_model(chosen)
    model.load_state_dict(state)
    return model
