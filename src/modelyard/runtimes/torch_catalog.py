"""Loader for ``safetensors`` versions: a catalog spec and its weights.

Runs on torch, or on ONNX Runtime through an ONNX export verified against torch;
``auto`` measures both and keeps the faster (see :mod:`modelyard.runtimes.selection`).
"""

from __future__ import annotations

import importlib
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from modelyard.errors import InvalidInput
from modelyard.runtimes.devices import intra_op_threads, torch_device
from modelyard.runtimes.inputs import InputPipeline, preprocessor_from_params
from modelyard.runtimes.runtime import FormatLoader, LoadOptions, ModelRuntime, VersionArtifact
from modelyard.runtimes.tensors import specs_from_signature
from modelyard.runtimes.torch_module import TorchRuntime

if TYPE_CHECKING:
    import torch
    from torch import nn

    from modelyard.nn import ArchSpec


def load(artifact: VersionArtifact, options: LoadOptions) -> ModelRuntime:
    """The catalog model in eval mode, on torch or (``auto``/``onnxruntime``) ONNX Runtime.

    The spec is the version's, else the one stored in the weights' metadata. Its one
    input is ``input`` and its one output ``output`` (logits or regression values), as
    :func:`modelyard.nn.spec_signature` says.
    """
    from modelyard.nn import parse_spec, read_weights, spec_signature

    state, stored = read_weights(artifact.path)
    raw = artifact.spec if artifact.spec is not None else stored
    if raw is None:
        raise InvalidInput("a safetensors version needs a catalog spec; this one has none")
    spec = parse_spec(raw)
    device = torch_device(options.device)
    threads = intra_op_threads(options.threads)
    model = _restore(spec, artifact.params, state).to(device).eval()
    preprocessor = preprocessor_from_params(artifact.params)
    signature = spec_signature(spec)
    inputs = specs_from_signature(signature["inputs"])
    runtime = TorchRuntime(
        model,
        name="torch",
        device=device,
        inputs=inputs,
        outputs=specs_from_signature(signature["outputs"]),
        pipeline=InputPipeline(inputs, preprocessor),
    )
    if options.runtime == "torch":
        return runtime
    from modelyard.runtimes.selection import choose_runtime

    return choose_runtime(
        runtime,
        model,
        preprocessor=preprocessor,
        options=options,
        threads=threads,
        vocab_size=getattr(spec, "vocab_size", None),
    )


def _restore(
    spec: ArchSpec, params: Mapping[str, Any], state: dict[str, torch.Tensor]
) -> nn.Module:
    from torch import nn

    from modelyard.nn import build_model, check_weights

    compression = params.get("compression")
    if compression is None:
        check_weights(spec, state)
        model = build_model(spec)
        model.load_state_dict(state)
        return model
    # Looked up at run time: compressed versions need the compression package, which an
    # installation may lack; everything else loads without it.
    try:
        package = importlib.import_module("modelyard.compression")
    except ImportError:
        package = None
    restore = getattr(package, "restore_model", None)
    if restore is None:
        raise InvalidInput(
            "this version is compressed; loading it needs the modelyard.compression package "
            "(restore_model), which this installation lacks"
        )
    model = restore(spec.model_dump(mode="json"), compression, state)
    if not isinstance(model, nn.Module):
        raise InvalidInput(f"compression: restore_model returned {type(model).__name__}")
    return model


LOADER = FormatLoader(runtimes=("torch", "onnxruntime"), load=load)
