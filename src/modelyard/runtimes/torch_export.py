"""Loader for ``torch_export`` versions: a ``.pt2`` program written by ``torch.export.save``."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from modelyard.errors import InvalidInput
from modelyard.runtimes.devices import intra_op_threads, torch_device
from modelyard.runtimes.inputs import InputPipeline, preprocessor_from_params
from modelyard.runtimes.runtime import FormatLoader, LoadOptions, ModelRuntime, VersionArtifact
from modelyard.runtimes.tensors import TensorSpec, torch_datatype_name
from modelyard.runtimes.torch_module import TorchRuntime

if TYPE_CHECKING:
    from torch.export import ExportedProgram


def load(artifact: VersionArtifact, options: LoadOptions) -> ModelRuntime:
    """``program.module()`` on the chosen device.

    Inputs and outputs are the program's user inputs and outputs, named and typed as
    the graph records them (a dimension exported as dynamic is -1). The program runs
    as it was exported: a module exported in training mode keeps its dropout.
    """
    import torch

    device = torch_device(options.device)
    intra_op_threads(options.threads)
    # torch.export.load only: the registry accepted this archive because it holds JSON
    # and raw tensor data alone, so loading it unpickles nothing.
    try:
        program = torch.export.load(str(artifact.path))
    except Exception as exc:
        raise InvalidInput(f"could not load the torch.export program: {exc}") from exc
    if device.type != "cpu":
        from torch.export.passes import move_to_device_pass

        program = move_to_device_pass(program, device)
    inputs, outputs = _signature(program)
    pipeline = InputPipeline(inputs, preprocessor_from_params(artifact.params))
    return TorchRuntime(
        program.module(),
        name="torch_export",
        device=device,
        inputs=inputs,
        outputs=outputs,
        pipeline=pipeline,
    )


def _signature(program: ExportedProgram) -> tuple[list[TensorSpec], list[TensorSpec]]:
    values: dict[str, Any] = {}
    for node in program.graph.nodes:
        if node.op == "placeholder":
            values[node.name] = node.meta.get("val")
        elif node.op == "output":
            for arg in _nodes(node.args):
                values.setdefault(arg.name, arg.meta.get("val"))
    signature = program.graph_signature
    inputs = [_spec(name, values.get(name), "input") for name in signature.user_inputs]
    outputs = [_spec(name, values.get(name), "output") for name in signature.user_outputs]
    return inputs, outputs


def _nodes(args: Any) -> list[Any]:
    import torch.fx

    if isinstance(args, torch.fx.Node):
        return [args]
    if isinstance(args, list | tuple):
        return [node for arg in args for node in _nodes(arg)]
    return []


def _spec(name: str | None, value: Any, side: str) -> TensorSpec:
    import torch

    if name is None or not isinstance(value, torch.Tensor):
        raise InvalidInput(
            f"{side} {name!r} of the exported program is not a tensor; served models take "
            "and return tensors only"
        )
    # Symbolic sizes (torch.SymInt) are the dimensions exported as dynamic.
    shape = [dim if isinstance(dim, int) else -1 for dim in value.shape]
    return TensorSpec(name, torch_datatype_name(str(value.dtype)), shape)


LOADER = FormatLoader(runtimes=("torch_export",), load=load)
