"""Hugging Face model folders as registry versions (format ``hf``).

A version of format ``hf`` is a tar or zip of a folder as ``save_pretrained`` writes it:
``config.json``, tokenizer files and ``*.safetensors`` weights. Only data is accepted:

- weights in safetensors only; ``*.bin``, ``*.pt``, ``*.pth``, ``*.ckpt``, ``*.pkl``,
  ``*.h5``, ``*.msgpack`` and other pickled or framework-specific files are refused;
- no code: ``*.py`` files and ``auto_map`` entries (``trust_remote_code`` models) are
  refused, so loading never imports anything from the upload.

:func:`describe_hf_folder` reads what the folder holds into the version's ``spec``::

    {"kind": "causal_lm", "architectures": ["GPT2LMHeadModel"], "model_type": "gpt2",
     "context_length": 128, "chat_template": true, "embedding_dim": null}

``kind`` is ``causal_lm`` (chat and completions) or ``embedding`` (a sentence encoder).
The archive itself is what the blob store keeps; :func:`unpack_hf` unpacks it for serving.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from modelyard.errors import InvalidInput, UnsafeArtifact
from modelyard.formats import FILE_SUFFIX, PICKLE_SUFFIXES, SUFFIXES
from modelyard.registry.archives import safe_extract
from modelyard.registry.formats.base import ArchiveLayout, FormatHandler
from modelyard.registry.formats.safetensors import check_safetensors
from modelyard.registry.intake import ArtifactInfo, Intake

HF_FORMAT = "hf"
REFUSED_SUFFIXES = (
    ".bin",
    *SUFFIXES["torchscript"],
    *SUFFIXES["torch_export"],
    *PICKLE_SUFFIXES,
    ".h5",
    ".msgpack",
    ".npy",
    ".npz",
    ".pyc",
    ".so",
)
"""Files a Hugging Face folder may not hold: pickled or framework-specific weights."""
TOKENIZER_FILES = ("tokenizer.json", "vocab.txt", "vocab.json", "tokenizer.model", "spiece.model")
_CODE_SUFFIXES = (".py", ".pyc", ".so")
_CAUSAL_SUFFIXES = ("ForCausalLM", "LMHeadModel")
_CONTEXT_KEYS = ("max_position_embeddings", "n_positions", "n_ctx", "seq_length")
_EMBED_DIM_KEYS = ("hidden_size", "d_model", "n_embd", "dim")


def matches_hf_folder(names: set[str]) -> bool:
    """Whether unpacked archive paths look like a Hugging Face model folder."""
    return "config.json" in names and any(n.endswith(FILE_SUFFIX["safetensors"]) for n in names)


def describe_hf_folder(files: dict[str, Path]) -> dict[str, Any]:
    """Check an unpacked folder (relative path → file) and return the version's spec.

    Raises:
        UnsafeArtifact: pickled weights, code, or ``auto_map`` (remote code).
        InvalidInput: a missing or malformed ``config.json`` or tokenizer.
    """
    for name in sorted(files):
        lower = name.lower()
        if lower.endswith(_CODE_SUFFIXES):
            raise UnsafeArtifact(
                f"the model folder holds code ({name!r}); custom code is never run "
                "(trust_remote_code is not honoured)"
            )
        if lower.endswith(REFUSED_SUFFIXES):
            raise UnsafeArtifact(
                f"the model folder holds {name!r}, which is not safetensors; pickled weights "
                "are refused: save with save_pretrained(..., safe_serialization=True)"
            )
    config = _json_object(files, "config.json")
    for json_name in ("config.json", "tokenizer_config.json"):
        if json_name in files and "auto_map" in _json_object(files, json_name):
            raise UnsafeArtifact(
                f"{json_name} has 'auto_map': the model needs custom code, which is never run "
                "(trust_remote_code is not honoured)"
            )
    if not any(name in files for name in TOKENIZER_FILES):
        raise InvalidInput(
            f"the model folder has no tokenizer: expected one of {', '.join(TOKENIZER_FILES)}"
        )
    architectures = config.get("architectures") or []
    if not isinstance(architectures, list) or not all(isinstance(a, str) for a in architectures):
        raise InvalidInput("config.json: 'architectures' must be a list of class names")
    model_type = config.get("model_type")
    if not isinstance(model_type, str) or not model_type:
        raise InvalidInput("config.json: 'model_type' is missing")
    causal = any(a.endswith(_CAUSAL_SUFFIXES) for a in architectures)
    sentence = "modules.json" in files or "sentence_bert_config.json" in files
    if not causal and not sentence and not architectures:
        raise InvalidInput(
            "config.json names no architecture: add 'architectures' (e.g. GPT2LMHeadModel)"
        )
    template = _has_chat_template(files)
    context = next((config[k] for k in _CONTEXT_KEYS if isinstance(config.get(k), int)), None)
    dim = next((config[k] for k in _EMBED_DIM_KEYS if isinstance(config.get(k), int)), None)
    return {
        "kind": "causal_lm" if causal else "embedding",
        "architectures": architectures,
        "model_type": model_type,
        "context_length": context,
        "chat_template": template,
        "embedding_dim": None if causal else dim,
    }


def unpack_hf(archive: Path, dest: Path, *, max_bytes: int) -> Path:
    """Unpack a stored ``hf`` archive into ``dest`` (once) and return the model folder."""
    marker = dest / ".unpacked"
    if not marker.exists():
        dest.mkdir(parents=True, exist_ok=True)
        extracted = safe_extract(archive, dest / "tree", max_total_bytes=max_bytes)
        files = {p.relative_to(dest / "tree").as_posix(): p for p in extracted}
        describe_hf_folder(_strip_root(files))
        marker.write_text("ok", encoding="utf-8")
    tree = dest / "tree"
    if (tree / "config.json").exists():
        return tree
    inner = [p.parent for p in tree.glob("*/config.json")]
    if len(inner) != 1:
        raise InvalidInput("the stored model archive has no config.json at its top")
    return inner[0]


def _strip_root(files: dict[str, Path]) -> dict[str, Path]:
    roots = {name.split("/", 1)[0] for name in files}
    if len(roots) == 1 and all("/" in name for name in files):
        root = roots.pop()
        return {name.removeprefix(f"{root}/"): p for name, p in files.items()}
    return files


def _json_object(files: dict[str, Path], name: str) -> dict[str, Any]:
    path = files.get(name)
    if path is None:
        raise InvalidInput(f"the model folder has no {name}")
    try:
        value = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, ValueError) as exc:
        raise InvalidInput(f"{name} is not valid JSON: {exc}") from exc
    if not isinstance(value, dict):
        raise InvalidInput(f"{name} must hold a JSON object")
    return value


def _has_chat_template(files: dict[str, Path]) -> bool:
    if "chat_template.jinja" in files or "chat_template.json" in files:
        return True
    if "tokenizer_config.json" not in files:
        return False
    return bool(_json_object(files, "tokenizer_config.json").get("chat_template"))


def _inspect_hf_archive(files: dict[str, Path], intake: Intake) -> ArtifactInfo:
    spec = describe_hf_folder(files)
    for name, path in files.items():
        if name.endswith(FILE_SUFFIX["safetensors"]):
            check_safetensors(path)
    # Roles are prefixed so that no role reads "model.safetensors": the archive itself,
    # not one file of it, is the version's blob.
    return ArtifactInfo(HF_FORMAT, None, spec, {f"hf/{name}": p for name, p in files.items()})


def _inspect_hf_single(path: Path, intake: Intake) -> ArtifactInfo:
    raise InvalidInput(
        "format 'hf' is a tar or zip of a Hugging Face model folder (config.json, tokenizer "
        "files, *.safetensors)"
    )


HANDLER = FormatHandler(HF_FORMAT, (), lambda _path, _head: False, _inspect_hf_single)
LAYOUT = ArchiveLayout(
    HF_FORMAT,
    "a Hugging Face folder (config.json, tokenizer, *.safetensors)",
    matches_hf_folder,
    _inspect_hf_archive,
)

__all__ = [
    "HANDLER",
    "HF_FORMAT",
    "LAYOUT",
    "describe_hf_folder",
    "matches_hf_folder",
    "unpack_hf",
]
