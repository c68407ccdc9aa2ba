"""The model formats a version can have, and the file suffixes each is known by.

The one table of suffixes for every layer: the registry's intake recognises an upload by
it, the compression methods, jobs and the serving layer write a version's artifact under
its canonical suffix, and the CLI names the suffixes it takes::

    path = work / f"model{FILE_SUFFIX['onnx']}"   # model.onnx
    "mlp.pth".endswith(SUFFIXES["torchscript"])   # True
"""

from __future__ import annotations

SUFFIXES: dict[str, tuple[str, ...]] = {
    "safetensors": (".safetensors",),
    "torch_export": (".pt2",),
    "torchscript": (".pt", ".pth", ".jit", ".torchscript"),
    "onnx": (".onnx",),
    "keras": (".keras",),
}
"""The suffixes of each single-file format, the canonical one first (``hf`` versions are
folders, uploaded as archives)."""

FILE_SUFFIX: dict[str, str] = {fmt: suffixes[0] for fmt, suffixes in SUFFIXES.items()}
"""The canonical suffix of each single-file format: what a stored version is called."""

ARCHIVE_SUFFIXES: tuple[str, ...] = (
    ".tar",
    ".tar.gz",
    ".tgz",
    ".tar.bz2",
    ".tbz2",
    ".tar.xz",
    ".txz",
    ".zip",
)
"""Suffixes of the tar and zip archives an upload may come in."""

PICKLE_SUFFIXES: tuple[str, ...] = (".pkl", ".pickle", ".joblib", ".ckpt")
"""Suffixes of pickles, which are refused whatever they hold."""


__all__ = ["ARCHIVE_SUFFIXES", "FILE_SUFFIX", "PICKLE_SUFFIXES", "SUFFIXES"]
