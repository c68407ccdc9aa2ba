"""Loader for ``onnx`` versions: the file runs on ONNX Runtime."""

from __future__ import annotations

from modelyard.runtimes.devices import intra_op_threads
from modelyard.runtimes.inputs import preprocessor_from_params
from modelyard.runtimes.ort import OnnxRuntime
from modelyard.runtimes.runtime import FormatLoader, LoadOptions, ModelRuntime, VersionArtifact


def load(artifact: VersionArtifact, options: LoadOptions) -> ModelRuntime:
    """An :class:`OnnxRuntime` over the version's file, with its recorded preprocessing."""
    return OnnxRuntime(
        artifact.path,
        device=options.device,
        threads=intra_op_threads(options.threads),
        preprocessor=preprocessor_from_params(artifact.params),
    )


LOADER = FormatLoader(runtimes=("onnxruntime",), load=load)
