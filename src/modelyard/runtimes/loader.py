"""Which loader handles which registry format, and the one entry point to them."""

from __future__ import annotations

from pathlib import Path

from modelyard.errors import InvalidInput, UnsupportedFormat
from modelyard.runtimes import keras, onnx, torch_catalog, torch_export, torchscript
from modelyard.runtimes.runtime import FormatLoader, LoadOptions, Runtime, VersionArtifact

LOADERS: dict[str, FormatLoader] = {
    "safetensors": torch_catalog.LOADER,
    "torchscript": torchscript.LOADER,
    "torch_export": torch_export.LOADER,
    "onnx": onnx.LOADER,
    "keras": keras.LOADER,
}
"""Registry format → its loader. A new format is one module with a ``LOADER`` and one entry."""


def load_runtime(
    artifact: VersionArtifact,
    *,
    runtime: str = "auto",
    device: str = "auto",
    work_dir: Path,
    threads: int | None = None,
) -> Runtime:
    """Load a model version for inference.

    ``runtime`` is ``auto`` or an engine the format supports (``LOADERS[format].runtimes``):
    ``auto`` runs a catalog (safetensors) version on whichever of torch and an ONNX export
    on ONNX Runtime is faster and proven equal, and every other format on its own engine;
    ``runtime.selection`` says what was chosen and why. ``device`` is ``auto`` (CUDA when
    available), ``cpu``, ``cuda`` or ``cuda:N``. ``work_dir`` receives derived files (the
    ONNX export) and should be the version's own folder. ``threads`` sets the intra-op
    threads (see :func:`modelyard.runtimes.devices.intra_op_threads`).

    Raises:
        UnsupportedFormat: no loader serves ``artifact.format``.
        InvalidInput: an unknown runtime or device, or an artifact that does not load.

    Example::

        rt = load_runtime(VersionArtifact("safetensors", path, spec, signature, params),
                          work_dir=tmp)
        rt.infer({"input": rows})["output"]
    """
    loader = LOADERS.get(artifact.format)
    if loader is None:
        raise UnsupportedFormat(
            f"format {artifact.format!r} cannot be served; servable formats: " + ", ".join(LOADERS)
        )
    if runtime != "auto" and runtime not in loader.runtimes:
        choices = ", ".join(("auto", *loader.runtimes))
        raise InvalidInput(
            f"runtime: {runtime!r} cannot run {artifact.format} versions; choose {choices}"
        )
    loaded = loader.load(artifact, LoadOptions(runtime, device, work_dir, threads))
    if runtime == "auto" and len(loader.runtimes) == 1:
        loaded.selection = {
            "runtime": loaded.name,
            "reason": f"the only runtime for {artifact.format} versions",
        }
    return loaded
