"""Applying one method to a source version: the child module and its artifact.

:func:`check_applicable` says, before anything runs, whether a method fits a source (the
job planner turns its InvalidInput into a 422); :func:`compress` produces the child.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from modelyard.compression.cast import cast_model
from modelyard.compression.export import EXPORT_SUFFIX, check_close, export_module, load_exported
from modelyard.compression.fit import FitHooks, fit
from modelyard.compression.methods import (
    CastMethod,
    ExportMethod,
    FineTuneMethod,
    Method,
    PruneMethod,
    QuantizeMethod,
)
from modelyard.compression.onnx_module import OnnxModule
from modelyard.compression.onnx_quant import quantize_dynamic_onnx, quantize_static_onnx
from modelyard.compression.prune import (
    apply_masks,
    magnitude_masks,
    sparsity_of,
    structured_prune,
    structured_targets,
    unstructured_targets,
)
from modelyard.compression.quantize import choose_modules, pack_state, quantize_model
from modelyard.compression.source import Source
from modelyard.errors import InvalidInput
from modelyard.training import Objective

EXPORTABLE = {"catalog": ("onnx", "torchscript", "torch_export"), "keras": ("onnx", "torch_export")}


@dataclass
class Data:
    """Model-ready tensors: the held-out set, and the set to train or calibrate on."""

    x_eval: torch.Tensor
    y_eval: torch.Tensor
    objective: Objective
    x_fit: torch.Tensor | None = None
    y_fit: torch.Tensor | None = None


@dataclass
class Child:
    """What a method produced: the module to evaluate and the artifact to register."""

    module: nn.Module
    artifact: Path
    format: str
    spec: dict[str, Any] | None
    compression: dict[str, Any] | None
    facts: dict[str, Any] = field(default_factory=dict)


def quantize_backend(method: QuantizeMethod, family: str) -> str:
    """``torchao`` or ``onnxruntime``: where ``method`` runs for a source of ``family``.

    ``auto`` picks ONNX Runtime for the int8 schemes: on a CPU its integer kernels make
    the child faster than its parent, where torchao's eager ones make it slower. Naming
    ``modules`` (which ONNX Runtime cannot take) or a weight-only scheme picks torchao.
    """
    if method.backend != "auto":
        return method.backend
    if family in ("onnx", "keras") or method.scheme == "static_int8":
        return "onnxruntime"
    if method.scheme == "dynamic_int8" and method.modules is None:
        return "onnxruntime"
    return "torchao"


def check_applicable(method: Method, source: Source) -> None:
    """Raise InvalidInput (naming the field) when ``method`` cannot run on ``source``."""
    family = source.family
    name = method.name
    if family == "catalog_compressed":
        described = (source.compression or {}).get("method")
        raise InvalidInput(
            f"method.name: this version is already compressed ({described}); {name} starts "
            "from a float version: use its parent"
        )
    if isinstance(method, QuantizeMethod):
        backend = quantize_backend(method, family)
        if backend == "torchao" and family != "catalog":
            raise InvalidInput(
                f"method.backend: torchao quantizes catalog versions; this is {family}, which "
                "ONNX Runtime quantizes (dynamic_int8 or static_int8)"
            )
        if backend == "onnxruntime" and family not in ("catalog", "onnx", "keras"):
            raise InvalidInput(f"method.backend: ONNX Runtime cannot quantize a {family} version")
        if backend == "onnxruntime" and method.scheme not in ("dynamic_int8", "static_int8"):
            raise InvalidInput(
                f"method.scheme: {method.scheme} is a torchao scheme; ONNX Runtime does "
                "dynamic_int8 and static_int8"
            )
        if backend == "onnxruntime" and method.modules is not None:
            raise InvalidInput("method.modules: ONNX Runtime quantizes every layer it can")
        return
    if isinstance(method, PruneMethod | CastMethod) and family != "catalog":
        raise InvalidInput(f"method.name: {name} applies to catalog versions, not to {family}")
    if isinstance(method, ExportMethod) and method.format not in EXPORTABLE.get(family, ()):
        allowed = ", ".join(EXPORTABLE.get(family, ())) or "nothing"
        raise InvalidInput(f"method.format: a {family} version exports to {allowed}")
    if isinstance(method, FineTuneMethod) and family not in ("catalog", "keras"):
        raise InvalidInput(f"method.name: finetune trains catalog and Keras versions, not {family}")


def compress(
    method: Method, source: Source, data: Data, work: Path, hooks: FitHooks | None = None
) -> Child:
    """Apply ``method`` to a fresh copy of ``source``; the child's files go under ``work``."""
    check_applicable(method, source)
    if isinstance(method, QuantizeMethod):
        if quantize_backend(method, source.family) == "onnxruntime":
            return _quantize_onnx(method, source, data, work)
        return _quantize_torchao(method, source, work)
    if isinstance(method, PruneMethod):
        if method.kind == "structured":
            return _prune_structured(method, source, data, work, hooks)
        return _prune_unstructured(method, source, data, work, hooks)
    if isinstance(method, CastMethod):
        model = source.load()
        compression = cast_model(model, method.dtype)
        return catalog_child(model, source.spec, compression, work)
    if isinstance(method, ExportMethod):
        return _export(method, source, data, work)
    return _finetune(method, source, data, work, hooks)


def catalog_child(
    model: nn.Module,
    spec: dict[str, Any] | None,
    compression: dict[str, Any] | None,
    work: Path,
    facts: dict[str, Any] | None = None,
) -> Child:
    """A child stored as a catalog version: its state (quantized weights packed) and spec."""
    from safetensors.torch import save_file

    from modelyard.nn import SPEC_METADATA_KEY, parse_spec

    path = work / "child.safetensors"
    state = {k: v.contiguous() for k, v in pack_state(model).items()}
    metadata = None
    if spec is not None:
        metadata = {SPEC_METADATA_KEY: json.dumps(parse_spec(spec).model_dump(), sort_keys=True)}
    save_file(state, str(path), metadata=metadata)
    return Child(model.eval(), path, "safetensors", spec, compression, facts or {})


def _quantize_torchao(method: QuantizeMethod, source: Source, work: Path) -> Child:
    model = source.load()
    modules = choose_modules(model, method.scheme, method.modules, method.group_size)
    compression = quantize_model(model, method.scheme, modules, method.group_size)
    return catalog_child(model, source.spec, compression, work)


def _onnx_of(source: Source, data: Data, work: Path) -> Path:
    if source.format == "onnx":
        return source.path
    path = work / "exported.onnx"
    export_module(source.load(), data.x_eval[:8], "onnx", path)
    return path


def _quantize_onnx(method: QuantizeMethod, source: Source, data: Data, work: Path) -> Child:
    onnx_path = _onnx_of(source, data, work)
    target = work / "child.onnx"
    facts: dict[str, Any] = {"backend": "onnxruntime", "scheme": method.scheme}
    if method.scheme == "static_int8":
        if data.x_fit is None:
            raise InvalidInput("method.calibration_dataset: no calibration rows were loaded")
        rows = data.x_fit[: method.calibration_rows].numpy()
        quantize_static_onnx(onnx_path, target, work, rows)
        facts["calibration_rows"] = int(rows.shape[0])
    else:
        facts["int8_ops"] = quantize_dynamic_onnx(onnx_path, target, work)
    return Child(OnnxModule(target), target, "onnx", None, None, facts)


def _fit_rows(data: Data) -> tuple[torch.Tensor, torch.Tensor]:
    if data.x_fit is None or data.y_fit is None:
        raise InvalidInput("fine_tune.dataset: no training rows were loaded")
    return data.x_fit, data.y_fit


def _prune_unstructured(
    method: PruneMethod, source: Source, data: Data, work: Path, hooks: FitHooks | None
) -> Child:
    assert method.sparsity is not None
    model = source.load()
    modules = unstructured_targets(model, method.modules)
    masks = magnitude_masks(model, modules, method.sparsity, method.scope)
    apply_masks(model, masks)
    facts: dict[str, Any] = {}
    if method.fine_tune is not None:
        x, y = _fit_rows(data)
        facts["fine_tune"] = fit(
            model, x, y, method.fine_tune, data.objective, masks=masks, hooks=hooks
        )
    achieved = sparsity_of(model, modules)
    compression = {
        "method": "prune",
        "kind": "unstructured",
        "sparsity": achieved,
        "target": method.sparsity,
        "scope": method.scope,
        "modules": modules,
    }
    return catalog_child(model, source.spec, compression, work, facts)


def _prune_structured(
    method: PruneMethod, source: Source, data: Data, work: Path, hooks: FitHooks | None
) -> Child:
    from modelyard.nn import parse_spec

    assert method.amount is not None and source.spec is not None
    spec = parse_spec(source.spec)
    modules = structured_targets(spec, method.modules)
    smaller, new_spec = structured_prune(source.load(), spec, method.amount, modules)
    facts: dict[str, Any] = {"modules": modules}
    if method.fine_tune is not None:
        x, y = _fit_rows(data)
        facts["fine_tune"] = fit(smaller, x, y, method.fine_tune, data.objective, hooks=hooks)
    return catalog_child(smaller, new_spec.model_dump(mode="json"), None, work, facts)


def _export(method: ExportMethod, source: Source, data: Data, work: Path) -> Child:
    model = source.load()
    path = work / f"child{EXPORT_SUFFIX[method.format]}"
    export_module(model, data.x_eval[:8], method.format, path, method.opset)
    exported = load_exported(method.format, path)
    diff = check_close(model, exported, data.x_eval, method.atol, method.rtol)
    facts = {"max_abs_diff": diff, "atol": method.atol, "rtol": method.rtol}
    return Child(exported, path, method.format, None, None, facts)


def _finetune(
    method: FineTuneMethod, source: Source, data: Data, work: Path, hooks: FitHooks | None
) -> Child:
    model = source.load()
    x, y = _fit_rows(data)
    objective = data.objective.with_outputs(source.outputs)
    spent: dict[str, Any] = {}
    history = fit(
        model, x, y, method.fit, objective, hooks=hooks, privacy=method.privacy, spent=spent
    )
    facts: dict[str, Any] = {"fine_tune": history}
    if spent:
        facts["privacy"] = spent
    if source.family == "keras":
        if source.save is None:
            raise InvalidInput("method.name: this Keras version cannot be saved back")
        path = work / "child.keras"
        source.save(model, path)
        return Child(model, path, "keras", None, None, facts)
    return catalog_child(model, source.spec, None, work, facts)
