"""Rebuilding a compressed catalog model from its spec, ``compression`` and weights.

A compressed catalog version is a ``safetensors`` version whose ``params["compression"]``
says how its module differs from the plain one the spec builds::

    {"method": "quantize", "scheme": "dynamic_int8", "backend": "torchao",
     "modules": ["head", "layers.0.linear"], "unrolled": []}
    {"method": "quantize", "scheme": "weight_int4", ..., "group_size": 32}
    {"method": "prune", "kind": "unstructured", "sparsity": 0.8, "modules": [...]}
    {"method": "cast", "dtype": "float16"}

:func:`restore_model` is what the serving layer calls; :func:`check_compressed_weights`
is what the registry calls on upload, reading only the safetensors header.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any, Literal, TypeAlias

import torch
from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError
from torch import nn

from modelyard.compression.cast import DTYPES, add_cast_hooks
from modelyard.compression.quantize import (
    TORCHAO_SCHEMES,
    quantizable,
    restore_quantized,
    storage_shapes,
)
from modelyard.compression.recurrent import unroll
from modelyard.errors import InvalidInput
from modelyard.nn import build_model, check_weights, parse_spec, spec_signature
from modelyard.nn.field_errors import invalid_input


class _Descriptor(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Quantized(_Descriptor):
    """Linear layers (and unrolled recurrent layers) with torchao integer weights."""

    method: Literal["quantize"]
    scheme: Literal["dynamic_int8", "weight_int8", "weight_int4"]
    backend: Literal["torchao"] = "torchao"
    modules: list[str] = Field(min_length=1)
    unrolled: list[str] = Field(default_factory=list)
    group_size: Literal[32, 64, 128, 256] = 32


class Pruned(_Descriptor):
    """Float weights with zeros; the module is the plain one."""

    method: Literal["prune"]
    kind: Literal["unstructured"]
    sparsity: float = Field(ge=0.0, le=1.0)
    target: float | None = None
    scope: Literal["global", "layer"] = "global"
    modules: list[str] = Field(default_factory=list)


class Cast(_Descriptor):
    """Half-precision weights with float32 inputs and outputs."""

    method: Literal["cast"]
    dtype: Literal["float16", "bfloat16"]


Descriptor: TypeAlias = Annotated[Quantized | Pruned | Cast, Field(discriminator="method")]


def parse_compression(raw: Any) -> Quantized | Pruned | Cast:
    """Validate ``params["compression"]``; InvalidInput names the field."""
    if not isinstance(raw, Mapping):
        raise InvalidInput("params.compression: must be an object with a 'method'")
    try:
        parsed: Quantized | Pruned | Cast = TypeAdapter(Descriptor).validate_python(dict(raw))
    except ValidationError as exc:
        raise invalid_input(exc, "params.compression", skip=1) from None
    return parsed


def _skeleton(spec: Mapping[str, Any], descriptor: Quantized) -> nn.Module:
    """The float model with the descriptor's recurrent layers unrolled, on the meta device."""
    with torch.device("meta"):
        model = build_model(spec)
    available = quantizable(model, descriptor.scheme, descriptor.group_size)
    for index, name in enumerate(descriptor.unrolled):
        if available.get(name) != "recurrent":
            raise InvalidInput(
                f"params.compression.unrolled[{index}]: {name!r} is not a recurrent layer"
            )
    unroll(model, list(descriptor.unrolled), copy_weights=False)
    linear = {n for n, m in model.named_modules() if isinstance(m, nn.Linear)}
    for index, name in enumerate(descriptor.modules):
        if name not in linear:
            raise InvalidInput(f"params.compression.modules[{index}]: {name!r} is not a Linear")
    return model


def expected_layout(
    spec: Mapping[str, Any], compression: Any
) -> dict[str, tuple[tuple[int, ...], torch.dtype]]:
    """``{tensor: (shape, dtype)}`` the weights of a compressed version must hold."""
    descriptor = parse_compression(compression)
    if isinstance(descriptor, Quantized):
        model = _skeleton(spec, descriptor)
        layout = {k: (tuple(v.shape), v.dtype) for k, v in model.state_dict().items()}
        for name in descriptor.modules:
            shape = layout.pop(f"{name}.weight")[0]
            for key, entry in storage_shapes(
                shape, descriptor.scheme, descriptor.group_size
            ).items():
                layout[f"{name}.{key}"] = entry
        return layout
    with torch.device("meta"):
        model = build_model(spec)
    if isinstance(descriptor, Cast):
        model.to(DTYPES[descriptor.dtype])
    return {k: (tuple(v.shape), v.dtype) for k, v in model.state_dict().items()}


def restore_model(
    spec: dict[str, Any], compression: dict[str, Any], state_dict: Mapping[str, torch.Tensor]
) -> torch.nn.Module:
    """The compressed catalog model, in eval mode, with its stored weights loaded.

    ``spec`` is the version's catalog spec, ``compression`` its ``params["compression"]``,
    ``state_dict`` the tensors of its safetensors file. Raises InvalidInput when the
    description is unknown or the tensors do not fit it.

    Example::

        from modelyard.nn import read_weights
        state, _ = read_weights("model.safetensors")
        model = restore_model(version.spec, version.params["compression"], state)
    """
    parsed = parse_spec(spec)
    descriptor = parse_compression(compression)
    _check_layout(expected_layout(parsed.model_dump(mode="json"), compression), state_dict)
    model = build_model(parsed)
    if isinstance(descriptor, Quantized):
        if descriptor.scheme not in TORCHAO_SCHEMES:
            raise InvalidInput(f"params.compression.scheme: unknown {descriptor.scheme!r}")
        restored = restore_quantized(model, descriptor.model_dump(), state_dict)
        return restored.eval()
    if isinstance(descriptor, Cast):
        dtype = DTYPES[descriptor.dtype]
        model.to(dtype)
        model.load_state_dict(dict(state_dict))
        add_cast_hooks(model, dtype)
        return model.eval()
    check_weights(parsed, state_dict)
    model.load_state_dict(dict(state_dict))
    return model.eval()


def _check_layout(
    layout: Mapping[str, tuple[tuple[int, ...], torch.dtype]],
    found: Mapping[str, Any],
) -> None:
    problems = []
    missing = sorted(set(layout) - set(found))
    unexpected = sorted(set(found) - set(layout))
    if missing:
        problems.append(f"missing tensors {missing[:5]}")
    if unexpected:
        problems.append(f"unexpected tensors {unexpected[:5]}")
    for name, (shape, dtype) in sorted(layout.items()):
        if name not in found:
            continue
        got_shape, got_dtype = _shape_dtype(found[name])
        if got_shape != shape or got_dtype != dtype:
            problems.append(
                f"{name}: {str(got_dtype).removeprefix('torch.')}{list(got_shape)} but the "
                f"compressed spec needs {str(dtype).removeprefix('torch.')}{list(shape)}"
            )
    if problems:
        raise InvalidInput(
            "the weights do not fit the spec and compression: " + "; ".join(problems[:6])
        )


def _shape_dtype(value: Any) -> tuple[tuple[int, ...], Any]:
    if isinstance(value, torch.Tensor):
        return tuple(value.shape), value.dtype
    shape, dtype = value
    return tuple(shape), dtype


_SAFETENSORS_DTYPES = {
    "F32": torch.float32,
    "F16": torch.float16,
    "BF16": torch.bfloat16,
    "F64": torch.float64,
    "I8": torch.int8,
    "U8": torch.uint8,
    "I16": torch.int16,
    "I32": torch.int32,
    "I64": torch.int64,
    "BOOL": torch.bool,
}


def check_compressed_weights(
    spec: dict[str, Any], weights: Path, compression: Any
) -> dict[str, Any]:
    """Validate a compressed version's safetensors header; returns its signature.

    Only the header is read, so a large upload is checked without loading it.
    """
    from safetensors import safe_open

    parsed = parse_spec(spec)
    layout = expected_layout(parsed.model_dump(mode="json"), compression)
    found: dict[str, tuple[tuple[int, ...], torch.dtype | str]] = {}
    with safe_open(str(weights), framework="pt") as f:
        for name in f.keys():  # noqa: SIM118
            piece = f.get_slice(name)
            dtype = _SAFETENSORS_DTYPES.get(piece.get_dtype(), piece.get_dtype())
            found[name] = (tuple(piece.get_shape()), dtype)
    _check_layout(layout, found)
    signature: dict[str, Any] = spec_signature(parsed)
    return signature
