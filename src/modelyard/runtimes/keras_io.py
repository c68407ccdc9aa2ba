"""Keras 3 ``.keras`` files: vetted, then loaded on Keras's PyTorch backend.

A ``.keras`` file is a zip of ``metadata.json``, ``config.json`` and
``model.weights.h5``. Before Keras sees it, :func:`vet_keras_archive` checks that it holds
exactly those members (bounded in size) and walks the config: every object must come
from Keras itself (``module`` ``keras`` or ``keras.*``), and layers that run arbitrary
code or foreign programs (``Lambda``, ``__lambda__`` functions, ``TorchModuleWrapper``,
``TFSMLayer``, ``JaxLayer``, ``FlaxLayer``) are refused. Keras then loads it with
``safe_mode=True`` (no lambda deserialization) and ``compile=False``.

Keras chooses its backend once, when it is first imported, from ``KERAS_BACKEND``.
:func:`keras_module` sets ``KERAS_BACKEND=torch`` just before that first import; if
something in the process imported Keras earlier with another backend, Keras models
cannot be loaded in that process (503), and the fix is to set ``KERAS_BACKEND=torch`` in
the process's environment. On the PyTorch backend a Keras model is a ``torch.nn.Module``,
so it is served, evaluated, fine-tuned and compressed like any other::

    model = load_keras_model(Path("m.keras"), work_dir)
    keras_signature(model)["inputs"]   # [{"name": "input_layer", "datatype": "FP32", ...}]

Importing this module imports neither Keras nor torch.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import zipfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

from modelyard.errors import InvalidInput, Unavailable, UnsafeArtifact

if TYPE_CHECKING:
    from torch import nn

KERAS_MEMBERS = frozenset({"metadata.json", "config.json", "model.weights.h5"})
REFUSED_CLASSES = frozenset(
    {"Lambda", "__lambda__", "TorchModuleWrapper", "TFSMLayer", "JaxLayer", "FlaxLayer"}
)
# Keras's own markers for values in a config, which carry no module.
INTERNAL_CLASSES = frozenset(
    {"__keras_tensor__", "__tuple__", "__numpy__", "__tensor__", "__bytes__", "__ellipsis__"}
)
_MAX_CONFIG_BYTES = 16 << 20
_DATATYPES = {
    "float32": "FP32",
    "float16": "FP16",
    "bfloat16": "BF16",
    "float64": "FP64",
    "int32": "INT32",
    "int64": "INT64",
    "uint8": "UINT8",
    "bool": "BOOL",
}


def keras_module() -> Any:
    """Keras, imported on the PyTorch backend (see the module docstring for the caveat)."""
    loaded = sys.modules.get("keras")
    if loaded is None:
        os.environ["KERAS_BACKEND"] = "torch"
        import keras

        loaded = keras
    backend = loaded.backend.backend()
    if backend != "torch":
        raise Unavailable(
            f"Keras was imported with the {backend!r} backend before Modelyard could choose "
            "PyTorch; Keras reads KERAS_BACKEND once, at its first import. Start the server "
            "with KERAS_BACKEND=torch"
        )
    return loaded


def vet_keras_archive(path: Path, max_bytes: int) -> dict[str, Any]:
    """Check a ``.keras`` zip before Keras reads it; returns its config.

    Raises:
        UnsafeArtifact: unexpected members, too many bytes, or a config naming code from
            outside Keras or a layer that runs arbitrary code.
        InvalidInput: not a readable ``.keras`` file.
    """
    try:
        with zipfile.ZipFile(path) as zf:
            infos = zf.infolist()
            names = [info.filename for info in infos]
            if len(names) != len(set(names)) or set(names) != KERAS_MEMBERS:
                raise UnsafeArtifact(
                    f"a .keras file holds exactly {sorted(KERAS_MEMBERS)}; this one holds "
                    f"{sorted(names)[:10]}"
                )
            if any(info.flag_bits & 0x1 for info in infos):
                raise UnsafeArtifact("encrypted members are refused")
            total = sum(info.file_size for info in infos)
            if total > max_bytes:
                raise UnsafeArtifact(f"the .keras file unpacks to {total} bytes, over {max_bytes}")
            if zf.getinfo("config.json").file_size > _MAX_CONFIG_BYTES:
                raise UnsafeArtifact("the .keras config.json is too large")
            config = json.loads(zf.read("config.json"))
            metadata = json.loads(zf.read("metadata.json"))
    except (zipfile.BadZipFile, UnicodeDecodeError, ValueError) as exc:
        raise InvalidInput(f"not a readable .keras file: {exc}") from exc
    if not isinstance(config, dict) or not isinstance(metadata, dict):
        raise InvalidInput("a .keras file's config.json and metadata.json hold JSON objects")
    _vet_config(config, "config")
    return config


def _vet_config(node: Any, where: str) -> None:
    if isinstance(node, list):
        for index, item in enumerate(node):
            _vet_config(item, f"{where}[{index}]")
        return
    if not isinstance(node, dict):
        return
    if "class_name" in node:
        _vet_object(node, where)
    for key, value in node.items():
        _vet_config(value, f"{where}.{key}")


def _vet_object(node: dict[str, Any], where: str) -> None:
    name = node.get("class_name")
    module = node.get("module")
    if name in REFUSED_CLASSES:
        raise UnsafeArtifact(
            f"Keras {where}: {name} runs arbitrary code and is refused; rebuild the model "
            "from built-in layers"
        )
    if module is None:
        if name not in INTERNAL_CLASSES:
            raise UnsafeArtifact(f"Keras {where}: {name!r} names no module")
        return
    if not isinstance(module, str) or not (module == "keras" or module.startswith("keras.")):
        raise UnsafeArtifact(
            f"Keras {where}: {name!r} comes from {module!r}; only Keras's own objects are "
            "accepted (custom objects would run the uploader's code)"
        )
    registered = node.get("registered_name")
    if isinstance(registered, str) and ">" in registered:
        raise UnsafeArtifact(f"Keras {where}: custom object {registered!r} is refused")


def _keras_path(path: Path, work_dir: Path) -> Path:
    """``path`` under a ``.keras`` name, which Keras requires."""
    if path.suffix == ".keras":
        return path
    target = work_dir / "model.keras"
    try:
        os.link(path, target)
    except OSError:
        shutil.copyfile(path, target)
    return target


def load_keras_model(
    path: Path, work_dir: Path, max_bytes: int = 1 << 34, *, device: str = "cpu"
) -> nn.Module:
    """The vetted ``.keras`` model at ``path`` as a ``torch.nn.Module`` on ``device``.

    ``work_dir`` is where a copy under a ``.keras`` name may be made; ``device`` is a torch
    device name (``cpu``, ``cuda:0``).
    """
    vet_keras_archive(path, max_bytes)
    keras = keras_module()
    try:
        with keras.device(device):
            model = keras.saving.load_model(
                str(_keras_path(path, work_dir)), compile=False, safe_mode=True
            )
    except Exception as exc:
        raise InvalidInput(f"Keras cannot load the model: {exc}") from exc
    if not getattr(model, "inputs", None):
        raise InvalidInput(
            "the Keras model has no defined inputs; upload a Sequential model with an Input "
            "or a functional model"
        )
    module: nn.Module = model
    return module


def save_keras_model(model: nn.Module, path: Path) -> None:
    """Write a Keras model (as loaded by :func:`load_keras_model`) to ``path`` (``.keras``)."""
    save = getattr(model, "save", None)
    if not callable(save) or path.suffix != ".keras":
        raise InvalidInput("only Keras models are saved as .keras files")
    save(str(path))


def keras_signature(model: Any) -> dict[str, Any]:
    """Inputs and outputs of a loaded Keras model, with -1 for the batch dimension.

    Each entry is ``{"name", "datatype", "shape"}``, as in a registry signature.
    """

    def entries(tensors: list[Any], names: list[str]) -> list[dict[str, Any]]:
        found = []
        for index, tensor in enumerate(tensors):
            shape = [-1 if d is None else int(d) for d in tensor.shape]
            dtype = str(getattr(tensor, "dtype", "float32"))
            name = names[index] if index < len(names) else f"output_{index}"
            found.append({"name": name, "datatype": _DATATYPES.get(dtype), "shape": shape})
        return found

    input_names = [str(getattr(t, "name", f"input_{i}")) for i, t in enumerate(model.inputs)]
    output_names = [str(n) for n in getattr(model, "output_names", None) or []]
    if len(output_names) != len(model.outputs):
        output_names = [f"output_{i}" for i in range(len(model.outputs))]
    return {
        "inputs": entries(list(model.inputs), input_names),
        "outputs": entries(list(model.outputs), output_names),
    }


__all__ = [
    "keras_module",
    "keras_signature",
    "load_keras_model",
    "save_keras_model",
    "vet_keras_archive",
]
