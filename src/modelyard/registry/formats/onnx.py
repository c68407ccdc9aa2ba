"""ONNX models (format ``onnx``): one ``.onnx`` file with its weights embedded."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

from modelyard.errors import InvalidInput, UnsafeArtifact
from modelyard.registry.formats.base import FormatHandler, suffixes_of
from modelyard.registry.heads import onnx_output_kind
from modelyard.registry.intake import ArtifactInfo, Intake
from modelyard.registry.signature import onnx_signature

if TYPE_CHECKING:
    import onnx


def _sniff_onnx(path: Path, head: bytes) -> bool:
    # ModelProto's first field is ir_version (field 1, varint): tag byte 0x08.
    if head[:1] != b"\x08":
        return False
    try:
        _load_onnx(path)
    except InvalidInput:
        return False
    return True


def _load_onnx(path: Path) -> onnx.ModelProto:
    # ONNX loads only when an ONNX version is checked.
    import onnx

    try:
        return onnx.load(str(path), load_external_data=False)
    except Exception as exc:
        raise InvalidInput(f"not a valid ONNX model: {exc}") from exc


def _inspect_onnx(path: Path, intake: Intake) -> ArtifactInfo:
    # ONNX loads only when an ONNX version is checked.
    import onnx

    model = _load_onnx(path)
    for tensor in _onnx_tensors(model):
        if tensor.data_location == onnx.TensorProto.EXTERNAL:
            location = {e.key: e.value for e in tensor.external_data}.get("location", "")
            # A single uploaded file cannot carry side files; whatever the reference names
            # would be read from the server's disk.
            raise UnsafeArtifact(
                f"ONNX tensor {tensor.name!r} keeps its data in {location!r}, which points "
                "outside the artifact; export with external_data=False"
            )
    try:
        onnx.checker.check_model(model)
    except Exception as exc:
        raise InvalidInput(f"the ONNX model fails onnx.checker: {exc}") from exc
    return ArtifactInfo(
        "onnx", onnx_signature(model), None, {"model.onnx": path}, onnx_output_kind(model)
    )


def _onnx_tensors(model: onnx.ModelProto) -> Iterator[onnx.TensorProto]:
    """Every tensor that could hold data: initializers and attributes, in all subgraphs."""
    graphs = [model.graph]
    nodes = [node for function in model.functions for node in function.node]
    while graphs or nodes:
        if graphs:
            graph = graphs.pop()
            yield from graph.initializer
            for sparse in graph.sparse_initializer:
                yield from (sparse.values, sparse.indices)
            nodes.extend(graph.node)
            continue
        for attr in nodes.pop().attribute:
            if attr.HasField("t"):
                yield attr.t
            yield from attr.tensors
            if attr.HasField("sparse_tensor"):
                yield from (attr.sparse_tensor.values, attr.sparse_tensor.indices)
            for sparse in attr.sparse_tensors:
                yield from (sparse.values, sparse.indices)
            if attr.HasField("g"):
                graphs.append(attr.g)
            graphs.extend(attr.graphs)


HANDLER = FormatHandler("onnx", suffixes_of("onnx"), _sniff_onnx, _inspect_onnx)
