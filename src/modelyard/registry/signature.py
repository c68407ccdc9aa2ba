"""Signatures of model versions: the tensors a model takes and returns.

A signature is plain JSON, stored with the version and served as Open Inference Protocol
metadata::

    {"inputs": [{"name": "x", "datatype": "FP32", "shape": [-1, 4]}],
     "outputs": [{"name": "y", "datatype": "FP32", "shape": [-1, 3]}]}

``shape`` uses -1 for a dimension that varies (such as the batch). Where a format does
not record a tensor's element type or shape (TorchScript), ``datatype`` and ``shape`` are
``None``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from modelyard.errors import InvalidInput
from modelyard.runtimes.tensors import torch_datatype_name

if TYPE_CHECKING:
    import onnx
    import torch
    from torch.export import ExportedProgram

# onnx.TensorProto.DataType numbers; fixed by the ONNX standard.
_ONNX_TO_OIP = {
    1: "FP32",
    2: "UINT8",
    3: "INT8",
    4: "UINT16",
    5: "INT16",
    6: "INT32",
    7: "INT64",
    8: "BYTES",
    9: "BOOL",
    10: "FP16",
    11: "FP64",
    12: "UINT32",
    13: "UINT64",
    16: "BF16",
}


def tensor_entry(name: str, datatype: str | None, shape: list[int] | None) -> dict[str, Any]:
    """One ``inputs``/``outputs`` entry of a signature."""
    return {"name": name, "datatype": datatype, "shape": shape}


def torch_datatype(dtype: torch.dtype, where: str) -> str:
    """The Open Inference Protocol name of a torch dtype, e.g. ``torch.float32`` → ``FP32``."""
    name = str(dtype).removeprefix("torch.")
    datatype = torch_datatype_name(name)
    if datatype is None:
        raise InvalidInput(
            f"{where} has element type {name}, which the Open Inference Protocol cannot carry"
        )
    return datatype


def exported_program_signature(program: ExportedProgram) -> dict[str, Any]:
    """The user-facing tensors of a ``torch.export`` program, with -1 for dynamic dims."""
    # PyTorch loads only when a version of this format is checked, not at server start.
    from torch.export.graph_signature import InputKind, OutputKind, TensorArgument

    values: dict[str, Any] = {}
    for node in program.graph.nodes:
        if node.op == "placeholder":
            values[node.name] = node.meta.get("val")
        elif node.op == "output":
            for out in _flatten(node.args):
                values.setdefault(out.name, out.meta.get("val"))

    def entries(specs: list[Any], user_kind: Any, side: str) -> list[dict[str, Any]]:
        found = []
        for spec in specs:
            if spec.kind != user_kind:
                continue
            if not isinstance(spec.arg, TensorArgument):
                raise InvalidInput(
                    f"{side} {spec.arg!r} of the exported program is not a tensor; served "
                    "models take and return tensors only"
                )
            name = spec.arg.name
            found.append(_fake_tensor_entry(name, values.get(name), f"{side} {name!r}"))
        return found

    signature = program.graph_signature
    return {
        "inputs": entries(signature.input_specs, InputKind.USER_INPUT, "input"),
        "outputs": entries(signature.output_specs, OutputKind.USER_OUTPUT, "output"),
    }


def _flatten(args: Any) -> list[Any]:
    # PyTorch loads only when a version of this format is checked, not at server start.
    import torch.fx

    if isinstance(args, torch.fx.Node):
        return [args]
    if isinstance(args, (list, tuple)):
        return [node for arg in args for node in _flatten(arg)]
    return []


def _fake_tensor_entry(name: str, value: Any, where: str) -> dict[str, Any]:
    # PyTorch loads only when a version of this format is checked, not at server start.
    import torch

    if not isinstance(value, torch.Tensor):
        return tensor_entry(name, None, None)
    # Symbolic sizes (torch.SymInt) are the dynamic dimensions.
    shape = [dim if isinstance(dim, int) else -1 for dim in value.shape]
    return tensor_entry(name, torch_datatype(value.dtype, where), shape)


def torchscript_signature(module: torch.jit.ScriptModule) -> dict[str, Any] | None:
    """Argument names of ``forward``; TorchScript records no dtypes or shapes.

    Returns ``None`` when the module has no ``forward`` method.
    """
    # PyTorch loads only when a version of this format is checked, not at server start.
    import torch

    forward = getattr(module, "forward", None)
    schema = getattr(forward, "schema", None)
    if schema is None:
        return None
    inputs = [tensor_entry(arg.name, None, None) for arg in schema.arguments[1:]]
    returns = schema.returns
    outputs_type = returns[0].type if len(returns) == 1 else None
    if isinstance(outputs_type, torch.TupleType):
        count = len(outputs_type.elements())
    else:
        count = len(returns)
    outputs = [tensor_entry(f"output{i}", None, None) for i in range(count)]
    return {"inputs": inputs, "outputs": outputs}


def onnx_signature(model: onnx.ModelProto) -> dict[str, Any]:
    """Graph inputs (initializers excluded) and outputs, with -1 for dynamic dims."""
    graph = model.graph
    initializers = {tensor.name for tensor in graph.initializer}
    inputs = [
        _onnx_entry(value, "input") for value in graph.input if value.name not in initializers
    ]
    outputs = [_onnx_entry(value, "output") for value in graph.output]
    return {"inputs": inputs, "outputs": outputs}


def _onnx_entry(value: onnx.ValueInfoProto, side: str) -> dict[str, Any]:
    where = f"{side} {value.name!r}"
    if value.type.WhichOneof("value") != "tensor_type":
        raise InvalidInput(f"{where} is not a tensor; served models take and return tensors")
    tensor_type = value.type.tensor_type
    datatype = _ONNX_TO_OIP.get(tensor_type.elem_type)
    if datatype is None:
        raise InvalidInput(
            f"{where} has ONNX element type {tensor_type.elem_type}, which the Open "
            "Inference Protocol cannot carry"
        )
    shape: list[int] | None = None
    if tensor_type.HasField("shape"):
        shape = [
            dim.dim_value if dim.HasField("dim_value") else -1 for dim in tensor_type.shape.dim
        ]
    return tensor_entry(value.name, datatype, shape)


# The Open Inference Protocol's datatypes (a declared signature may use these only).
DATATYPES = frozenset(
    {"BOOL", "UINT8", "UINT16", "UINT32", "UINT64", "INT8", "INT16", "INT32", "INT64"}
    | {"FP16", "FP32", "FP64", "BF16", "BYTES"}
)


def with_declared(
    recorded: dict[str, Any] | None, declared: Any, fmt: str
) -> dict[str, Any] | None:
    """The signature read from an artifact, completed with the one its uploader declared.

    A format that records no datatypes or shapes (TorchScript) takes them from
    ``declared``, which may also name the outputs (``output0``… otherwise). Its inputs
    must be the artifact's, in order, and as many outputs as the artifact returns; where
    the artifact records a datatype or a shape, the declared one must be the same.

    >>> with_declared({"inputs": [{"name": "x", "datatype": None, "shape": None}],
    ...                "outputs": [{"name": "output0", "datatype": None, "shape": None}]},
    ...               {"inputs": [{"name": "x", "datatype": "FP32", "shape": [-1, 4]}],
    ...                "outputs": [{"name": "y", "datatype": "FP32", "shape": [-1, 3]}]},
    ...               "torchscript")["outputs"]
    [{'name': 'y', 'datatype': 'FP32', 'shape': [-1, 3]}]

    Raises InvalidInput, naming the tensor, for a malformed or contradicting signature.
    """
    if declared is None:
        return recorded
    if not isinstance(declared, dict) or not set(declared) <= {"inputs", "outputs"}:
        raise InvalidInput('signature: must be a JSON object with "inputs" and "outputs" lists')
    if recorded is None:
        raise InvalidInput(f"signature: {fmt} versions have no tensors to describe")
    merged: dict[str, Any] = {}
    for side in ("inputs", "outputs"):
        have: list[dict[str, Any]] = recorded.get(side) or []
        given = declared.get(side)
        if given is None:
            merged[side] = have
            continue
        if not isinstance(given, list) or len(given) != len(have):
            raise InvalidInput(
                f"signature.{side}: the {fmt} file has {len(have)} {side} "
                f"({', '.join(repr(e['name']) for e in have)}); describe each of them, in order"
            )
        merged[side] = [
            _merged_entry(f"signature.{side}[{i}]", old, new, renamable=side == "outputs")
            for i, (old, new) in enumerate(zip(have, given, strict=True))
        ]
    return merged


def _merged_entry(
    where: str, recorded: dict[str, Any], given: Any, *, renamable: bool
) -> dict[str, Any]:
    if not isinstance(given, dict) or not set(given) <= {"name", "datatype", "shape"}:
        raise InvalidInput(f'{where}: must be an object with "name", "datatype" and "shape"')
    name = given.get("name", recorded["name"])
    if not isinstance(name, str) or not name:
        raise InvalidInput(f"{where}.name: must be a non-empty string")
    if name != recorded["name"] and not renamable:
        raise InvalidInput(f"{where}.name: the file names this tensor {recorded['name']!r}")
    datatype = given.get("datatype")
    if datatype is not None and datatype not in DATATYPES:
        raise InvalidInput(
            f"{where}.datatype: {datatype!r} is not one of {', '.join(sorted(DATATYPES))}"
        )
    shape = given.get("shape")
    if shape is not None and (
        not isinstance(shape, list)
        or not all(isinstance(d, int) and not isinstance(d, bool) and d >= -1 for d in shape)
    ):
        raise InvalidInput(f"{where}.shape: must be a list of sizes, -1 for one that varies")
    for key, value in (("datatype", datatype), ("shape", shape)):
        if recorded.get(key) is not None and value is not None and value != recorded[key]:
            raise InvalidInput(f"{where}.{key}: the file records {recorded[key]!r}, not {value!r}")
    return tensor_entry(
        name,
        datatype if datatype is not None else recorded.get("datatype"),
        shape if shape is not None else recorded.get("shape"),
    )


__all__ = [
    "DATATYPES",
    "exported_program_signature",
    "onnx_signature",
    "tensor_entry",
    "torch_datatype",
    "torchscript_signature",
    "with_declared",
]
