"""Optional postprocessing of a classifier's scores: probabilities, top-k, labels."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from modelyard.errors import InvalidInput
from modelyard.runtimes.outputs import OutputKind, as_probabilities, decision_threshold


def postprocess(
    outputs: Mapping[str, np.ndarray],
    *,
    softmax: bool = False,
    top_k: int | None = None,
    classes: Sequence[Any] | None = None,
    output_kind: OutputKind = "logits",
) -> dict[str, np.ndarray]:
    """``outputs`` plus what was asked for, computed from the scores ``[N, C]``.

    The scores are the output named ``output`` (a catalog model's logits), else the only
    output; ``output_kind`` says what they are (the version's ``params["outputs"]``, see
    :mod:`modelyard.runtimes.outputs`). Added entries:

    - ``probabilities`` (``softmax=True``): softmax of logits over the last axis, or for a
      model with a single output column (binary, trained with bce) the sigmoid; the scores
      themselves when the model's own last layer already made them probabilities.
    - ``top_k_indices`` and ``top_k_scores`` (``top_k=k``): the ``k`` best columns per row,
      best first, scored by probability when ``softmax`` is on, else by the raw score;
      with ``classes`` also ``top_k_labels``.
    - ``labels`` (``classes`` given): the predicted class's name per row; ``classes``
      lists one name per output column, or two for a binary model.

    >>> out = postprocess({"output": np.array([[0.0, 2.0]])}, softmax=True, classes=["a", "b"])
    >>> out["labels"].tolist(), out["probabilities"].round(3).tolist()
    (['b'], [[0.119, 0.881]])
    """
    result = dict(outputs)
    if not softmax and top_k is None and classes is None:
        return result
    scores = _scores(outputs)
    columns = scores.shape[1]
    ranked = scores
    if softmax:
        probabilities = as_probabilities(scores, output_kind)
        result["probabilities"] = probabilities
        ranked = probabilities
    if top_k is not None:
        if top_k < 1:
            raise InvalidInput(f"top_k: must be at least 1, got {top_k}")
        if columns == 1:
            raise InvalidInput("top_k: the model has a single output column; there is no ranking")
        k = min(top_k, columns)
        # A stable sort on the negated scores ranks ties by column, lowest first.
        indices = np.argsort(-ranked, axis=1, kind="stable")[:, :k]
        result["top_k_indices"] = indices.astype(np.int64)
        result["top_k_scores"] = np.take_along_axis(ranked, indices, axis=1)
        if classes is not None:
            _check_classes(classes, columns)
            result["top_k_labels"] = _label_array(classes, indices)
    if classes is not None:
        _check_classes(classes, columns)
        if columns == 1:
            ids = (scores[:, 0] > decision_threshold(output_kind)).astype(np.int64)
        else:
            ids = scores.argmax(axis=1)
        result["labels"] = _label_array(classes, ids)
    return result


def _scores(outputs: Mapping[str, np.ndarray]) -> np.ndarray:
    if "output" in outputs:
        chosen = "output"
    elif len(outputs) == 1:
        chosen = next(iter(outputs))
    else:
        raise InvalidInput(
            f"postprocessing needs an output named 'output' or a single output; the model "
            f"returns {sorted(outputs)}"
        )
    scores = np.asarray(outputs[chosen])
    if scores.ndim != 2 or scores.dtype.kind not in "fiu":
        raise InvalidInput(
            f"postprocessing needs scores of shape [N, C]; output {chosen!r} has shape "
            f"{list(scores.shape)} and type {scores.dtype}"
        )
    return scores if scores.dtype.kind == "f" else scores.astype(np.float32)


def _check_classes(classes: Sequence[Any], columns: int) -> None:
    wanted = 2 if columns == 1 else columns
    if len(classes) != wanted:
        raise InvalidInput(
            f"classes: {len(classes)} given, but the model's {columns} output column"
            f"{'s' if columns > 1 else ''} need {wanted}"
        )


def _label_array(classes: Sequence[Any], ids: np.ndarray) -> np.ndarray:
    names = [classes[i] for i in ids.ravel().tolist()]
    # Strings travel as BYTES tensors, which are object arrays here.
    dtype = object if all(isinstance(n, str) for n in names) else None
    return np.asarray(names, dtype=dtype).reshape(ids.shape)
