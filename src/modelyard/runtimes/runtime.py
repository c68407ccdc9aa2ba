"""The contract between a loaded model and the serving layer, and what loaders share."""

from __future__ import annotations

import threading
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from modelyard.errors import Unavailable
from modelyard.runtimes.inputs import InputPipeline
from modelyard.runtimes.tensors import TensorSpec, with_variable_batch


class TensorRuntime(Protocol):
    """What the serving layer calls a model that serves tensors through: its engine's name,
    the tensors it takes and returns, and ``infer``.

    Every :class:`Runtime` follows it; so do tensor models loaded by other means (a sentence
    encoder of the language-model layer). Language models are not called with tensors and do
    not follow it.
    """

    @property
    def name(self) -> str:
        """Which engine runs it."""
        ...

    @property
    def inputs(self) -> Sequence[TensorSpec]:
        """The tensors ``infer`` takes."""
        ...

    @property
    def outputs(self) -> Sequence[TensorSpec]:
        """The tensors ``infer`` returns."""
        ...

    def infer(self, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Outputs for a batch of raw inputs, batched along axis 0."""
        ...


class Runtime(Protocol):
    """A model loaded for inference.

    ``infer`` takes raw tensors by input name, batched along axis 0, and returns the
    outputs by name; it is safe to call from several threads at once. Bad inputs raise
    :class:`~modelyard.errors.InvalidInput` naming the tensor and the dimension.
    """

    name: str
    """Which engine runs it: ``torch``, ``torchscript``, ``torch_export``, ``onnxruntime``."""
    device: str
    """Where it runs: ``cpu``, ``cuda:0``."""
    inputs: list[TensorSpec]
    outputs: list[TensorSpec]
    max_batch_size: int | None
    """The most rows one call may carry; None: any."""
    selection: dict[str, Any]
    """Why this engine was chosen: ``runtime``, ``reason``, and for ``auto`` the timings."""

    def infer(self, inputs: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Outputs for a batch of raw inputs."""
        ...

    def close(self) -> None:
        """Release the model; later calls to ``infer`` raise Unavailable."""
        ...


@dataclass(frozen=True)
class VersionArtifact:
    """A model version as the serving layer hands it over.

    ``format`` is a registry format (``safetensors``, ``torchscript``, ``torch_export``,
    ``onnx``); ``path`` the artifact file on local disk; ``spec`` the catalog spec of a
    safetensors version; ``signature`` the registry's ``{"inputs": [...], "outputs":
    [...]}``; ``params`` the version's params, whose ``preprocessing`` is replayed on every
    input and whose ``compression`` says how to rebuild a compressed model.
    """

    format: str
    path: Path
    spec: dict[str, Any] | None = None
    signature: dict[str, Any] | None = None
    params: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class LoadOptions:
    """How :func:`~modelyard.runtimes.load_runtime` was asked to load a version."""

    runtime: str
    """``auto`` or one engine name the format supports."""
    device: str
    """``auto``, ``cpu``, ``cuda`` or ``cuda:N``."""
    work_dir: Path
    """Where derived files (an ONNX export) may be written."""
    threads: int | None = None
    """Intra-op threads; None keeps torch's process-wide setting."""


@dataclass(frozen=True)
class FormatLoader:
    """How one registry format is loaded: the engines it can run on, and the loader."""

    runtimes: tuple[str, ...]
    """Engine names a caller may ask for; ``auto`` is always accepted too."""
    load: Callable[[VersionArtifact, LoadOptions], ModelRuntime]


class ModelRuntime(ABC):
    """A runtime built from a forward function over model-ready arrays.

    Subclasses implement :meth:`forward`; :meth:`infer` checks, casts and preprocesses the
    raw inputs first (see :class:`~modelyard.runtimes.inputs.InputPipeline`). A model
    whose inputs all have a fixed first dimension ``B`` (an ONNX file or a program exported
    for one batch size) is run ``B`` rows at a time, the last chunk padded with copies of
    its last row, so that callers may send any batch.
    """

    def __init__(
        self,
        *,
        name: str,
        device: str,
        inputs: list[TensorSpec],
        outputs: list[TensorSpec],
        pipeline: InputPipeline,
    ) -> None:
        self.name = name
        self.device = device
        self.fixed_batch = _fixed_batch(inputs)
        self.inputs = [with_variable_batch(s) for s in inputs] if self.fixed_batch else inputs
        self.outputs = outputs
        self.max_batch_size: int | None = None
        self.selection: dict[str, Any] = {"runtime": name, "reason": "requested"}
        self.pipeline = pipeline
        self._closed = threading.Event()

    @abstractmethod
    def forward(self, arrays: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        """The model's outputs for arrays already checked and preprocessed."""

    def _release(self) -> None:  # noqa: B027 - most runtimes have something to drop
        """Drop the model; called once by :meth:`close`."""

    def infer(self, inputs: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Outputs for a batch of raw inputs; see :class:`Runtime`."""
        if self._closed.is_set():
            raise Unavailable(f"the {self.name} runtime is closed")
        arrays = self.pipeline.prepare(inputs)
        if self.fixed_batch is None:
            return self.forward(arrays)
        return self._forward_in_chunks(arrays, self.fixed_batch)

    def close(self) -> None:
        """Release the model; later calls to ``infer`` raise Unavailable."""
        if not self._closed.is_set():
            self._closed.set()
            self._release()

    def _forward_in_chunks(
        self, arrays: Mapping[str, np.ndarray], size: int
    ) -> dict[str, np.ndarray]:
        rows = next(iter(arrays.values())).shape[0]
        if rows == size:
            return self.forward(arrays)
        parts: list[dict[str, np.ndarray]] = []
        for start in range(0, rows, size):
            take = min(size, rows - start)
            chunk = {name: _padded(a[start : start + take], size) for name, a in arrays.items()}
            parts.append({name: out[:take] for name, out in self.forward(chunk).items()})
        return {name: np.concatenate([p[name] for p in parts]) for name in parts[0]}


def _fixed_batch(inputs: list[TensorSpec]) -> int | None:
    firsts = {s.shape[0] if s.shape else -1 for s in inputs}
    if len(firsts) == 1 and (size := firsts.pop()) > 0:
        return size
    return None


def _padded(array: np.ndarray, size: int) -> np.ndarray:
    missing = size - array.shape[0]
    if missing == 0:
        return array
    # Copies of a real row keep the padding inside the values the model was built for.
    filler = np.repeat(array[-1:], missing, axis=0)
    return np.concatenate([array, filler])
