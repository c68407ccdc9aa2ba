"""LoRA adapters as registry versions (format ``lora``).

A version of format ``lora`` is a tar or zip of a folder as peft's ``save_pretrained`` writes
it: ``adapter_config.json`` and ``adapter_model.safetensors`` (a ``README.md`` may come
along). It holds only the adapter's low-rank matrices, not the weights of the model it adapts:
that base model is the version's parent in its lineage (``parent_model``, ``parent_version``),
and a deployment of the adapter runs on a deployment of that base.

The version's ``spec`` is what the config says serving needs::

    {"kind": "lora_adapter", "r": 8, "alpha": 16.0, "use_rslora": false,
     "target_modules": ["c_attn", "c_fc", "c_proj"], "layers": 12}
"""

from __future__ import annotations

from pathlib import Path

from modelyard.errors import InvalidInput, UnsafeArtifact
from modelyard.llm.lora import ADAPTER_CONFIG, ADAPTER_WEIGHTS, layer_pairs, read_adapter_config
from modelyard.registry.archives import safe_extract
from modelyard.registry.formats.base import ArchiveLayout, FormatHandler
from modelyard.registry.formats.safetensors import check_safetensors
from modelyard.registry.intake import ArtifactInfo, Intake

LORA_FORMAT = "lora"
LORA_KIND = "lora_adapter"
_ALLOWED = {ADAPTER_CONFIG, ADAPTER_WEIGHTS, "README.md"}


def matches_lora_folder(names: set[str]) -> bool:
    """Whether unpacked archive paths look like a peft adapter folder."""
    return ADAPTER_CONFIG in names and "config.json" not in names


def _tensor_names(path: Path) -> list[str]:
    from safetensors import safe_open  # reads the header only; numpy keeps torch out

    with safe_open(str(path), framework="numpy") as f:
        return list(f.keys())


def describe_lora_folder(folder: Path) -> dict[str, object]:
    """Check an adapter folder and return its version's spec.

    Raises:
        UnsafeArtifact: a file other than the config, the safetensors weights and a README.
        InvalidInput: a config or weights that cannot be served.
    """
    for path in sorted(folder.rglob("*")):
        name = path.relative_to(folder).as_posix()
        if path.is_file() and name not in _ALLOWED:
            raise UnsafeArtifact(
                f"the adapter folder holds {name!r}; a LoRA adapter is {ADAPTER_CONFIG} and "
                f"{ADAPTER_WEIGHTS} only (safetensors; pickled weights are refused)"
            )
    config = read_adapter_config(folder)
    weights = folder / ADAPTER_WEIGHTS
    if not weights.is_file():
        raise InvalidInput(f"the adapter folder has no {ADAPTER_WEIGHTS}")
    check_safetensors(weights)
    layers = layer_pairs(_tensor_names(weights))
    return {**config.as_spec(), "layers": len(layers)}


def unpack_lora(archive: Path, dest: Path, *, max_bytes: int) -> Path:
    """Unpack a stored ``lora`` archive into ``dest`` and return the adapter folder."""
    safe_extract(archive, dest, max_total_bytes=max_bytes)
    found = [p.parent for p in dest.rglob(ADAPTER_CONFIG)]
    if len(found) != 1:
        raise InvalidInput(f"the stored adapter archive has no single {ADAPTER_CONFIG}")
    return found[0]


def _inspect_lora_archive(files: dict[str, Path], intake: Intake) -> ArtifactInfo:
    folder = files[ADAPTER_CONFIG].parent
    if any(p.parent != folder for p in files.values()):
        raise UnsafeArtifact(f"an adapter archive holds {', '.join(sorted(_ALLOWED))} only")
    spec = describe_lora_folder(folder)
    return ArtifactInfo(LORA_FORMAT, None, spec, {f"lora/{n}": p for n, p in files.items()})


def _inspect_lora_single(path: Path, intake: Intake) -> ArtifactInfo:
    raise InvalidInput(
        f"format 'lora' is a tar or zip of a peft adapter folder ({ADAPTER_CONFIG}, "
        f"{ADAPTER_WEIGHTS})"
    )


HANDLER = FormatHandler(LORA_FORMAT, (), lambda _path, _head: False, _inspect_lora_single)
LAYOUT = ArchiveLayout(
    LORA_FORMAT,
    f"a LoRA adapter folder ({ADAPTER_CONFIG}, {ADAPTER_WEIGHTS})",
    matches_lora_folder,
    _inspect_lora_archive,
)

__all__ = [
    "HANDLER",
    "LAYOUT",
    "LORA_FORMAT",
    "LORA_KIND",
    "describe_lora_folder",
    "matches_lora_folder",
    "unpack_lora",
]
