"""Checking that uploaded weights fit the catalog architecture they claim.

Only the safetensors header is read and the model is built on the ``meta`` device, so a
multi-GB upload is checked without loading its weights into memory.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from modelyard.errors import InvalidInput


def check_spec_weights(spec: dict[str, Any], weights: Path) -> dict[str, Any]:
    """Validate ``spec`` against the catalog and ``weights`` against the spec.

    Returns the version's signature; raises InvalidInput naming the field or tensor at fault.
    """
    # PyTorch loads only when a version of this format is checked, not at server start.
    import torch
    from safetensors import safe_open

    from modelyard.nn import build_model, parse_spec, spec_signature

    parsed = parse_spec(spec)
    with torch.device("meta"):
        model = build_model(parsed)
    expected = {name: tuple(t.shape) for name, t in model.state_dict().items()}
    with safe_open(str(weights), framework="pt") as f:
        got = {name: tuple(f.get_slice(name).get_shape()) for name in f.keys()}  # noqa: SIM118
    missing = sorted(set(expected) - set(got))
    unexpected = sorted(set(got) - set(expected))
    wrong = [
        f"{name}: shape {list(got[name])} but the spec needs {list(shape)}"
        for name, shape in sorted(expected.items())
        if name in got and got[name] != shape
    ]
    problems = []
    if missing:
        problems.append(f"missing tensors {missing[:5]}")
    if unexpected:
        problems.append(f"unexpected tensors {unexpected[:5]}")
    problems.extend(wrong[:5])
    if problems:
        raise InvalidInput("the weights do not fit the spec: " + "; ".join(problems))
    signature: dict[str, Any] = spec_signature(parsed)
    return signature


def spec_checker_for(
    params: Mapping[str, Any],
) -> Callable[[dict[str, Any], Path], dict[str, Any]]:
    """The weights check for a version with ``params``.

    A compressed catalog version (``params["compression"]``, see
    :mod:`modelyard.compression.restore`) holds quantized or cast tensors, so the
    compression package checks it against its description; the others are checked by
    :func:`check_spec_weights`.
    """
    compression = params.get("compression")
    if compression is None:
        return check_spec_weights

    def check_compressed(spec: dict[str, Any], weights: Path) -> dict[str, Any]:
        # Compression loads PyTorch; only a compressed version's check needs it.
        from modelyard.compression import check_compressed_weights

        return check_compressed_weights(spec, weights, compression)

    return check_compressed
