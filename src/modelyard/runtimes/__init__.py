"""The runtime layer: model versions loaded for inference.

Every safe registry format loads through one call, and every loaded model answers the
same :class:`Runtime` contract::

    from modelyard.runtimes import VersionArtifact, load_runtime, postprocess

    rt = load_runtime(VersionArtifact("safetensors", path, spec, signature, params),
                      runtime="auto", device="auto", work_dir=version_dir)
    out = rt.infer({"input": raw_rows})            # raw: the version's preprocessing runs here
    postprocess(out, softmax=True, top_k=3, classes=names)

=================  =============================  ===================================
format             engines (``runtime=``)         tensors
=================  =============================  ===================================
``safetensors``    ``torch``, ``onnxruntime``     ``input`` → ``output``
``torchscript``    ``torchscript``                ``forward``'s arguments → ``output0``…
``torch_export``   ``torch_export``               the program's user inputs and outputs
``onnx``           ``onnxruntime``                the graph's inputs and outputs
=================  =============================  ===================================

``auto`` picks, for a catalog version, the faster of torch and an ONNX export proven equal
on the signature (:mod:`modelyard.runtimes.selection`). Bad inputs raise
:class:`~modelyard.errors.InvalidInput` naming the tensor and the dimension
(:mod:`modelyard.runtimes.inputs`). Importing this package loads neither torch nor ONNX
Runtime; loading a model does.
"""

from modelyard.runtimes.inputs import InputPipeline
from modelyard.runtimes.loader import LOADERS, load_runtime
from modelyard.runtimes.postprocessing import postprocess
from modelyard.runtimes.runtime import (
    FormatLoader,
    LoadOptions,
    ModelRuntime,
    Runtime,
    TensorRuntime,
    VersionArtifact,
)
from modelyard.runtimes.tensors import TensorSpec

__all__ = [
    "LOADERS",
    "FormatLoader",
    "InputPipeline",
    "LoadOptions",
    "ModelRuntime",
    "Runtime",
    "TensorRuntime",
    "TensorSpec",
    "VersionArtifact",
    "load_runtime",
    "postprocess",
]
