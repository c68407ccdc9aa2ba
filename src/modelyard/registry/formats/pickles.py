"""Pickles, refused whatever they are called: recognised by name and by their opcodes.

Nothing here unpickles; a file is only parsed.
"""

from __future__ import annotations

import io
import pickletools
from pathlib import Path

from modelyard.registry.archives import is_archive
from modelyard.registry.formats.base import split_root, zip_names
from modelyard.registry.formats.safetensors import sniff_safetensors
from modelyard.registry.formats.torchscript import is_torchscript


def pickle_reason(path: Path, head: bytes) -> str | None:
    """Why this file is a pickle, or None. Never unpickles; only parses opcodes."""
    if sniff_safetensors(path, head):
        # A safetensors header length of 640 bytes begins 0x80 0x02, like a pickle.
        return None
    names = zip_names(path)
    if names is not None:
        return "a torch.save checkpoint (a pickle in a zip)" if _is_torch_save(names) else None
    if is_archive(path) is not None:
        return None
    if len(head) > 1 and head[0] == 0x80 and 2 <= head[1] <= 5:
        return f"a pickle (protocol {head[1]})"
    try:
        for opcode, _arg, _pos in pickletools.genops(io.BytesIO(head)):
            if opcode.name == "STOP":
                return "a pickle"
    except Exception:
        return None
    return None


def _is_torch_save(names: list[str]) -> bool:
    split = split_root(names)
    return split is not None and "data.pkl" in split[1] and not is_torchscript(names)
