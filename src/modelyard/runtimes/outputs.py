"""What a version's scores are: logits, or probabilities a final softmax or sigmoid made.

A version records it once, under ``params["outputs"]``, when it is registered: the
registry reads it from the model (a Keras model's last activation, a final Softmax or
Sigmoid in an ONNX, TorchScript or ``torch.export`` graph; catalog models end in a linear
head, so their scores are logits), and an uploader may state it
(``params={"outputs": "probabilities"}``). Every consumer asks :func:`output_kind`:

- ``logits``: unnormalised scores (also log-probabilities and regression values);
- ``probabilities``: a softmax over the last axis (rows sum to 1);
- ``binary_probabilities``: each column its own sigmoid (a binary or multi-label head).

Losses, fine-tuning and distillation work on logits, so :func:`as_logits` turns a model's
outputs into logits that give the same softmax (or sigmoid) back; serving postprocessing
turns scores into probabilities with :func:`as_probabilities` and never normalises twice::

    loss = F.cross_entropy(as_logits(model(x), output_kind(version.params)), y)

Importing this module imports neither torch nor numpy.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, Literal, cast, get_args

from modelyard.errors import InvalidInput

if TYPE_CHECKING:
    import numpy as np
    import torch

OutputKind = Literal["logits", "probabilities", "binary_probabilities"]
OUTPUT_KINDS: tuple[OutputKind, ...] = get_args(OutputKind)
OUTPUTS_PARAM = "outputs"
"""The key under a version's ``params`` that records its :data:`OutputKind`."""

PROBABILITY_FLOOR = 1e-7
"""Probabilities are clipped to ``[floor, 1 - floor]`` before their log is taken, as Keras
does in its cross-entropies, so a loss on a model's own probabilities equals Keras's."""


def check_output_kind(value: Any, where: str = f"params.{OUTPUTS_PARAM}") -> OutputKind:
    """``value`` as an :data:`OutputKind`; InvalidInput naming ``where`` otherwise."""
    if value not in OUTPUT_KINDS:
        raise InvalidInput(f"{where}: {value!r} is not one of {', '.join(OUTPUT_KINDS)}")
    return cast(OutputKind, value)


def output_kind(params: Mapping[str, Any] | None) -> OutputKind:
    """The kind a version's ``params`` record; ``logits`` when they record none."""
    value = (params or {}).get(OUTPUTS_PARAM)
    return "logits" if value is None else check_output_kind(value)


def as_logits(
    outputs: torch.Tensor, kind: OutputKind, *, floor: float = PROBABILITY_FLOOR
) -> torch.Tensor:
    """Logits whose softmax (or sigmoid, for binary probabilities) gives ``outputs`` back.

    Probabilities become their log (a softmax is unchanged by the constant it differs from
    the logits by), binary probabilities their log-odds; both are clipped to
    ``[floor, 1 - floor]`` first so that a certain wrong answer costs a finite loss.
    Distillation passes a smaller ``floor`` to keep a teacher's small probabilities apart.
    """
    if kind == "logits":
        return outputs
    clipped = outputs.clamp(floor, 1.0 - floor)
    if kind == "probabilities":
        return clipped.log()
    return clipped.log() - (1.0 - clipped).clamp_min(floor).log()


def as_probabilities(scores: np.ndarray, kind: OutputKind) -> np.ndarray:
    """Probabilities of scores ``[N, C]``: softmax (sigmoid for one column) of logits,
    the scores themselves when the model already normalised them."""
    import numpy as np

    if kind != "logits":
        return scores
    if scores.shape[1] == 1:
        # exp of a negative magnitude never overflows, on either side of zero.
        e = np.exp(-np.abs(scores))
        sigmoid: np.ndarray = np.where(scores >= 0, 1 / (1 + e), e / (1 + e)).astype(scores.dtype)
        return sigmoid
    # Shifting by the row maximum keeps exp from overflowing; the result is unchanged.
    shifted = np.exp(scores - scores.max(axis=1, keepdims=True))
    softmax: np.ndarray = shifted / shifted.sum(axis=1, keepdims=True)
    return softmax


def decision_threshold(kind: OutputKind) -> float:
    """The score above which a single-column (binary) model predicts the positive class."""
    return 0.0 if kind == "logits" else 0.5


__all__ = [
    "OUTPUTS_PARAM",
    "OUTPUT_KINDS",
    "PROBABILITY_FLOOR",
    "OutputKind",
    "as_logits",
    "as_probabilities",
    "check_output_kind",
    "decision_threshold",
    "output_kind",
]
