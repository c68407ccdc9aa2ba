"""What an uploaded model's outputs are, read from its graph, and what the version records.

A model whose single output comes out of a softmax returns ``probabilities``, out of a
sigmoid ``binary_probabilities``; anything else (a linear layer, a log-softmax) returns
``logits``. Ops that pass values through unchanged (``Identity``) are looked through.
Catalog versions end in a linear head and always return logits. Where a graph cannot
tell (several outputs, a final op hidden in a loop), the uploader states it with
``params={"outputs": "probabilities"}``; see :mod:`modelyard.runtimes.outputs`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from modelyard.errors import InvalidInput
from modelyard.runtimes.outputs import OUTPUTS_PARAM, OutputKind, check_output_kind

if TYPE_CHECKING:
    import onnx
    import torch
    from torch.export import ExportedProgram

_ONNX_OPS: dict[str, OutputKind] = {"Softmax": "probabilities", "Sigmoid": "binary_probabilities"}
# aten operator names, without namespace and overload.
_ATEN_OPS: dict[str, OutputKind] = {
    "softmax": "probabilities",
    "_softmax": "probabilities",
    "special_softmax": "probabilities",
    "sigmoid": "binary_probabilities",
}
_ATEN_PASS_THROUGH = frozenset({"alias", "clone", "contiguous", "detach", "_to_copy"})
_FIXED: dict[str, OutputKind] = {"safetensors": "logits"}


def onnx_output_kind(model: onnx.ModelProto) -> OutputKind:
    """``probabilities`` when the graph's one output comes out of a Softmax, and so on."""
    graph = model.graph
    if len(graph.output) != 1:
        return "logits"
    producers = {out: node for node in graph.node for out in node.output}
    node = producers.get(graph.output[0].name)
    while node is not None and node.op_type == "Identity" and node.input:
        node = producers.get(node.input[0])
    return _ONNX_OPS.get(node.op_type, "logits") if node is not None else "logits"


def torchscript_output_kind(module: torch.jit.ScriptModule) -> OutputKind:
    """``probabilities`` when ``forward`` returns a softmax, and so on."""
    try:
        graph = module.inlined_graph
    except (AttributeError, RuntimeError):
        return "logits"
    returned = list(graph.return_node().inputs())
    if len(returned) != 1:
        return "logits"
    node = returned[0].node()
    while node.kind().removeprefix("aten::") in _ATEN_PASS_THROUGH:
        node = next(node.inputs()).node()
    return _ATEN_OPS.get(node.kind().removeprefix("aten::"), "logits")


def exported_program_output_kind(program: ExportedProgram) -> OutputKind:
    """``probabilities`` when the program's one user output is a softmax, and so on."""
    # PyTorch loads only when a version of this format is checked, not at server start.
    import torch.fx

    names = list(program.graph_signature.user_outputs)
    if len(names) != 1:
        return "logits"
    nodes = {node.name: node for node in program.graph.nodes}
    node = nodes.get(str(names[0]))
    while node is not None and _aten_name(node) in _ATEN_PASS_THROUGH and node.args:
        first = node.args[0]
        node = first if isinstance(first, torch.fx.Node) else None
    return _ATEN_OPS.get(_aten_name(node), "logits") if node is not None else "logits"


def _aten_name(node: torch.fx.Node) -> str:
    """``_softmax`` for ``aten._softmax.default``; empty for anything not an operator call."""
    if node.op != "call_function":
        return ""
    schema = getattr(node.target, "_schema", None)
    name = getattr(schema, "name", "")
    return str(name).removeprefix("aten::")


def recorded_output_kind(fmt: str, detected: OutputKind | None, declared: Any) -> OutputKind | None:
    """What a version of format ``fmt`` records: the uploader's ``declared`` kind, else the
    ``detected`` one; ``None`` for formats without scores (language models).

    InvalidInput when ``declared`` is not a kind, or contradicts what the format fixes.
    """
    where = f"params.{OUTPUTS_PARAM}"
    fixed = _FIXED.get(fmt)
    if declared is None:
        return fixed or detected
    kind = check_output_kind(declared, where)
    if detected is None and fixed is None:
        raise InvalidInput(f"{where}: a {fmt} version has no scores to describe")
    if fixed is not None and kind != fixed:
        raise InvalidInput(
            f"{where}: a catalog ({fmt}) version ends in a linear head, so its outputs are "
            f"{fixed}, not {kind}"
        )
    return kind


__all__ = [
    "exported_program_output_kind",
    "onnx_output_kind",
    "recorded_output_kind",
    "torchscript_output_kind",
]
