"""The version a compression job starts from: how to load it, what it is, what it takes.

A :class:`Source` loads a fresh module on each call (methods change modules in place),
and says which family it belongs to, which decides the methods that apply to it:

- ``catalog``: a float catalog version (spec + safetensors, possibly unstructured-pruned);
- ``catalog_compressed``: a quantized or cast catalog version;
- ``onnx``, ``keras``, ``torchscript``, ``torch_export``: the other formats.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from modelyard.errors import InvalidInput
from modelyard.runtimes.outputs import OutputKind, output_kind
from modelyard.training import Preprocessor

FLOAT_COMPRESSIONS = ("prune",)


@dataclass
class Source:
    """A version as the compression code sees it."""

    format: str
    path: Path
    spec: dict[str, Any] | None
    params: dict[str, Any]
    signature: dict[str, Any] | None
    load: Callable[[], nn.Module]
    """A fresh module (eval mode) each call."""
    save: Callable[[nn.Module, Path], None] | None = field(default=None)
    """How to write a trained module back in this format (Keras); None: not possible."""

    @property
    def compression(self) -> dict[str, Any] | None:
        """``params["compression"]``, if any."""
        value = self.params.get("compression")
        return dict(value) if isinstance(value, Mapping) else None

    @property
    def outputs(self) -> OutputKind:
        """What the model returns: logits or probabilities (``params["outputs"]``)."""
        return output_kind(self.params)

    @property
    def family(self) -> str:
        """``catalog``, ``catalog_compressed`` or the format (see the module docstring)."""
        if self.format != "safetensors":
            return self.format
        compression = self.compression
        if compression is None or compression.get("method") in FLOAT_COMPRESSIONS:
            return "catalog"
        return "catalog_compressed"


def load_module(
    fmt: str, path: Path, spec: Mapping[str, Any] | None, params: Mapping[str, Any]
) -> nn.Module:
    """The module stored at ``path`` in registry format ``fmt``, in eval mode (CPU).

    Keras files are loaded by the registry's Keras loader, not here.
    """
    if fmt == "safetensors":
        from modelyard.compression.restore import restore_model
        from modelyard.nn import load_weights, read_weights

        compression = params.get("compression")
        if compression is None:
            return load_weights(dict(spec) if spec is not None else None, path).eval()
        if spec is None:
            raise InvalidInput("a compressed safetensors version needs its spec")
        state, _ = read_weights(path)
        return restore_model(dict(spec), dict(compression), state)
    if fmt == "onnx":
        from modelyard.compression.onnx_module import OnnxModule

        return OnnxModule(path)
    if fmt == "torchscript":
        scripted: nn.Module = torch.jit.load(str(path), map_location="cpu")  # type: ignore[no-untyped-call]
        return scripted.eval()
    if fmt == "torch_export":
        from modelyard.compression.export import ProgramModule

        return ProgramModule.load(path)
    raise InvalidInput(f"cannot load a {fmt} version here")


def preprocessor_for(
    params: Mapping[str, Any], signature: Mapping[str, Any] | None, labels: Any
) -> Preprocessor:
    """The version's recorded preprocessing, or (none recorded) reshaping to its input.

    ``labels`` (the data set's label array) decides the task when nothing is recorded:
    float labels are regression targets, others classes.
    """
    recorded = params.get("preprocessing")
    if isinstance(recorded, Mapping):
        return Preprocessor.from_dict(dict(recorded))
    inputs = (signature or {}).get("inputs") or []
    outputs = (signature or {}).get("outputs") or []
    shape = inputs[0].get("shape") if len(inputs) == 1 else None
    if not shape or any(not isinstance(d, int) or d < 1 for d in shape[1:]):
        raise InvalidInput(
            "the version records no preprocessing and its input shape is not fixed "
            f"({shape}); upload it with params.preprocessing"
        )
    out_shape = outputs[0].get("shape") if len(outputs) == 1 else None
    num_outputs = out_shape[-1] if out_shape and isinstance(out_shape[-1], int) else 1
    floating = getattr(getattr(labels, "dtype", None), "kind", "i") == "f"
    return Preprocessor(
        input_shape=[int(d) for d in shape[1:]],
        token_ids=inputs[0].get("datatype") in ("INT64", "INT32"),
        task="regression" if floating else "classification",
        num_outputs=max(int(num_outputs), 1),
    )
