"""Loader for ``torchscript`` versions: a module written by ``torch.jit.save``."""

from __future__ import annotations

from typing import Any

from modelyard.errors import InvalidInput
from modelyard.runtimes.devices import intra_op_threads, torch_device
from modelyard.runtimes.inputs import InputPipeline, preprocessed_spec, preprocessor_from_params
from modelyard.runtimes.runtime import FormatLoader, LoadOptions, ModelRuntime, VersionArtifact
from modelyard.runtimes.tensors import TensorSpec, specs_from_signature
from modelyard.runtimes.torch_module import TorchRuntime, module_float_dtype


def load(artifact: VersionArtifact, options: LoadOptions) -> ModelRuntime:
    """The module in eval mode on the chosen device.

    Inputs are ``forward``'s arguments that have no default. TorchScript records no types
    or shapes, so each input's spec comes from the recorded preprocessing when there is
    one, else from the registry's signature; where neither says, the input is passed
    through with floats cast to the module's parameter type. Outputs are ``output0``,
    ``output1``, … .
    """
    import torch

    device = torch_device(options.device)
    intra_op_threads(options.threads)
    # TorchScript's loader builds only TorchScript classes and tensors; the registry has
    # already checked the archive.
    try:
        module = torch.jit.load(str(artifact.path), map_location=device)  # type: ignore[no-untyped-call]
    except Exception as exc:
        raise InvalidInput(f"could not load the TorchScript module: {exc}") from exc
    module.eval()
    preprocessor = preprocessor_from_params(artifact.params)
    names, output_count = _schema(module)
    recorded = {s.name: s for s in specs_from_signature(_entries(artifact, "inputs"))}
    inputs = [recorded.get(name, TensorSpec(name, None, None)) for name in names]
    if preprocessor is not None and len(inputs) == 1:
        inputs = [preprocessed_spec(names[0], preprocessor)]
    outputs = specs_from_signature(_entries(artifact, "outputs"))
    if len(outputs) != output_count:
        outputs = [TensorSpec(f"output{i}", None, None) for i in range(output_count)]
    pipeline = InputPipeline(inputs, preprocessor, default_float=module_float_dtype(module))
    return TorchRuntime(
        module, name="torchscript", device=device, inputs=inputs, outputs=outputs, pipeline=pipeline
    )


def _schema(module: Any) -> tuple[list[str], int]:
    import torch

    schema = getattr(getattr(module, "forward", None), "schema", None)
    if schema is None:
        raise InvalidInput("the TorchScript module has no forward method")
    # Arguments with defaults (flags, options) keep them; callers send tensors only.
    names = [arg.name for arg in schema.arguments[1:] if not arg.has_default_value()]
    returns = schema.returns
    kind = returns[0].type if len(returns) == 1 else None
    count = len(kind.elements()) if isinstance(kind, torch.TupleType) else len(returns)
    return names, count


def _entries(artifact: VersionArtifact, side: str) -> list[Any] | None:
    signature = artifact.signature or {}
    entries = signature.get(side)
    return entries if isinstance(entries, list) else None


LOADER = FormatLoader(runtimes=("torchscript",), load=load)
