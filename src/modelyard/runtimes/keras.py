"""Loader for ``keras`` versions: a Keras 3 ``.keras`` file run on Keras's PyTorch backend.

The archive is vetted and loaded with ``safe_mode=True`` by
:func:`modelyard.runtimes.keras_io.load_keras_model`. The inputs and outputs are the Keras
model's own (``model.inputs`` / ``model.outputs``, names and shapes, -1 for the batch), and
a single input is passed as a tensor, several as a list in the model's order, with
``training=False``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from modelyard.runtimes.devices import intra_op_threads, torch_device
from modelyard.runtimes.inputs import InputPipeline, preprocessor_from_params
from modelyard.runtimes.keras_io import keras_module, keras_signature, load_keras_model
from modelyard.runtimes.runtime import FormatLoader, LoadOptions, ModelRuntime, VersionArtifact
from modelyard.runtimes.tensors import specs_from_signature
from modelyard.runtimes.torch_module import TorchRuntime


def load(artifact: VersionArtifact, options: LoadOptions) -> ModelRuntime:
    """The Keras model in inference mode on the chosen device."""
    device = torch_device(options.device)
    intra_op_threads(options.threads)
    options.work_dir.mkdir(parents=True, exist_ok=True)
    model = load_keras_model(artifact.path, options.work_dir, device=str(device))
    model.eval()
    signature = keras_signature(model)
    inputs = specs_from_signature(signature["inputs"])
    return TorchRuntime(
        _caller(model, str(device)),
        name="keras",
        device=device,
        inputs=inputs,
        outputs=specs_from_signature(signature["outputs"]),
        pipeline=InputPipeline(inputs, preprocessor_from_params(artifact.params)),
    )


def _caller(model: Any, device: str) -> Callable[..., Any]:
    """``model`` called as Keras expects: one tensor or a list, outside training."""
    keras = keras_module()

    def call(*tensors: Any) -> Any:
        # Keras keeps its device choice per thread; the batcher's workers each need it.
        with keras.device(device):
            return model(tensors[0] if len(tensors) == 1 else list(tensors), training=False)

    return call


LOADER = FormatLoader(runtimes=("keras",), load=load)
