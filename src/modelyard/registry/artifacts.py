"""Safe intake of uploaded model artifacts.

:func:`inspect_artifact` decides what an upload is, refuses anything that could run code
on the server, and reads the version's signature; the formats it accepts, and how each is
checked, are the modules of :mod:`modelyard.registry.formats`.

Pickles are refused whatever they are called: raw pickles, ``torch.save`` checkpoints,
and the ``.pkl``/``.pickle``/``.joblib``/``.ckpt`` extensions. Nothing here calls
``pickle.load`` or ``torch.load`` without ``weights_only=True``.

The format is taken from ``declared_format``, else the file name's extension (the table in
:mod:`modelyard.formats`), else the file's first bytes.
"""

from __future__ import annotations

import tempfile
from dataclasses import replace
from pathlib import Path
from typing import Any

from modelyard.errors import InvalidInput, UnsafeArtifact, UnsupportedFormat
from modelyard.formats import ARCHIVE_SUFFIXES, PICKLE_SUFFIXES
from modelyard.registry.archives import is_archive, safe_extract
from modelyard.registry.formats import ARCHIVE_LAYOUTS, FORMATS, FormatHandler
from modelyard.registry.formats.base import split_root
from modelyard.registry.formats.pickles import pickle_reason
from modelyard.registry.heads import recorded_output_kind
from modelyard.registry.intake import ArtifactInfo as ArtifactInfo
from modelyard.registry.intake import Intake as Intake
from modelyard.registry.intake import SpecChecker as SpecChecker
from modelyard.runtimes.outputs import check_output_kind

_PICKLE_ADVICE = "upload safetensors with a spec, TorchScript, torch.export or ONNX"
_HEAD_BYTES = 64 * 1024


def inspect_artifact(
    path: Path,
    *,
    declared_format: str | None,
    filename: str | None,
    spec: dict[str, Any] | None,
    work_dir: Path,
    spec_checker: SpecChecker | None = None,
    max_unpacked_bytes: int,
    declared_outputs: Any = None,
) -> ArtifactInfo:
    """Identify and validate an uploaded artifact.

    ``filename`` is the uploader's name for the file (its extension counts); ``spec`` is
    a catalog spec for safetensors weights and takes precedence over one stored in the
    file's metadata or in an archive's ``spec.json``. ``spec_checker`` validates the spec
    against the weights and returns the signature; without it the signature is ``None``.
    Archives unpack under ``work_dir``, at most ``max_unpacked_bytes`` in all.
    ``declared_outputs`` is what the uploader says the model returns (``logits``,
    ``probabilities``…); it takes precedence over what the graph shows.

    Raises:
        UnsafeArtifact: a pickle, or an archive or program that could run code or escape.
        UnsupportedFormat: the format is not one of :data:`FORMATS`.
        InvalidInput: the file is damaged, lacks a spec, or fails its format's checks.

    Example::

        info = inspect_artifact(upload, declared_format=None, filename="mlp.safetensors",
                                spec=None, work_dir=tmp, max_unpacked_bytes=1 << 30)
        info.format, info.signature
    """
    if declared_outputs is not None:
        check_output_kind(declared_outputs)
    intake = Intake(declared_format, filename, spec, work_dir, spec_checker, max_unpacked_bytes)
    name = (filename or path.name).lower()
    declared = declared_format.strip().lower() if declared_format else None
    if name.endswith(PICKLE_SUFFIXES) or declared in ("pickle", "pkl", "joblib"):
        raise UnsafeArtifact(f"pickle files are refused: {name!r} is a pickle; {_PICKLE_ADVICE}")
    with path.open("rb") as f:
        head = f.read(_HEAD_BYTES)
    if not head:
        raise InvalidInput("the artifact is empty")
    reason = pickle_reason(path, head)
    if reason is not None:
        raise UnsafeArtifact(f"pickle files are refused: this is {reason}; {_PICKLE_ADVICE}")

    handler = _choose_handler(path, head, declared, name)
    if handler is None:
        info = _inspect_archive(path, intake, declared)
    else:
        if spec is not None and handler.name != "safetensors":
            raise InvalidInput(
                f"a spec applies to safetensors versions only, not to {handler.name}"
            )
        info = handler.inspect(path, intake)
    outputs = recorded_output_kind(info.format, info.outputs, declared_outputs)
    return replace(info, outputs=outputs)


def accepted_formats() -> str:
    """The accepted formats, for error messages."""
    names = ", ".join(handler.name for handler in FORMATS)
    layouts = " or ".join(layout.description for layout in ARCHIVE_LAYOUTS)
    return f"{names}, or a tar/zip archive holding {layouts}"


def _choose_handler(
    path: Path, head: bytes, declared: str | None, name: str
) -> FormatHandler | None:
    """The handler for this upload, or None for an archive to unpack."""
    by_name = {handler.name: handler for handler in FORMATS}
    if declared is not None:
        if declared not in by_name:
            raise UnsupportedFormat(f"unknown format {declared!r}; accepted: {accepted_formats()}")
        handler = by_name[declared]
        packable = any(layout.format == declared for layout in ARCHIVE_LAYOUTS)
        if packable and not handler.sniff(path, head) and is_archive(path) is not None:
            return None
        return handler
    if name.endswith(ARCHIVE_SUFFIXES):
        return None
    for handler in FORMATS:
        if name.endswith(handler.extensions):
            return handler
    for handler in FORMATS:
        if handler.sniff(path, head):
            return handler
    if is_archive(path) is not None:
        return None
    raise UnsupportedFormat(
        f"cannot tell the format of {name!r} from its name or content; "
        f"accepted: {accepted_formats()}"
    )


def _inspect_archive(path: Path, intake: Intake, expected: str | None) -> ArtifactInfo:
    dest = Path(tempfile.mkdtemp(prefix="unpacked-", dir=intake.work_dir))
    extracted = safe_extract(path, dest, max_total_bytes=intake.max_unpacked_bytes)
    files = {p.relative_to(dest).as_posix(): p for p in extracted}
    split = split_root(list(files)) if len(files) > 1 else None
    if split is not None:
        # Archives made from a folder (tar czf m.tgz mymodel/) wrap everything in it.
        root = split[0]
        files = {name.removeprefix(f"{root}/"): p for name, p in files.items()}
    candidates = [layout for layout in ARCHIVE_LAYOUTS if expected in (None, layout.format)]
    for layout in candidates:
        if layout.matches(set(files)):
            return layout.inspect(files, intake)
    wanted = " or ".join(layout.description for layout in candidates)
    raise InvalidInput(
        f"the archive holds {sorted(files)}; expected exactly {wanted}"
        + (f" for format {expected!r}" if expected else "")
    )


__all__ = ["ArtifactInfo", "Intake", "SpecChecker", "accepted_formats", "inspect_artifact"]
