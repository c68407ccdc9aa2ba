"""The model formats a version can have, and the file suffix each is stored under.

One table for every layer that writes a version's artifact to a file (the registry's
intake, the compression methods, the jobs, the serving layer)::

    path = work / f"model{FILE_SUFFIX['onnx']}"   # model.onnx
"""

from __future__ import annotations

FILE_SUFFIX: dict[str, str] = {
    "safetensors": ".safetensors",
    "torchscript": ".pt",
    "torch_export": ".pt2",
    "onnx": ".onnx",
    "keras": ".keras",
}
"""The canonical suffix of each single-file format (``hf`` versions are folders)."""
