"""Explanations: which input values drove a deployment's prediction (needs numpy).

``POST /api/v1/deployments/{name}/explain`` with the inputs as nested JSON lists; the
attributions come back as arrays in the inputs' shape.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt

from modelyard.client._exceptions import ModelyardError
from modelyard.client._http import HTTP, seg


@dataclass(frozen=True)
class Explanation:
    """Attributions of one output score to every input value.

    ``attributions`` has the shape of the inputs (a dict by input name when they were
    named); ``target`` is the column explained per row (the predicted class unless asked);
    ``convergence_delta`` (integrated gradients) is ``sum(attributions) - (f(x) -
    f(baseline))`` per row; ``feature_names`` names a table model's columns.
    """

    method: str
    output: str
    target: list[int | None]
    attributions: npt.NDArray[np.float64] | dict[str, npt.NDArray[np.float64]]
    convergence_delta: npt.NDArray[np.float64] | None
    feature_names: list[str] | None
    model_version: int | None
    raw: dict[str, Any] = field(repr=False)


def explain(
    http: HTTP,
    name: str,
    x: npt.ArrayLike | Mapping[str, npt.ArrayLike],
    *,
    method: str,
    target: int | list[int] | None,
    baseline: Any,
    version: int | str | None,
    options: Mapping[str, Any],
) -> Explanation:
    """Ask deployment ``name`` to explain its predictions for ``x``."""
    named = isinstance(x, Mapping)
    inputs: Any = (
        {str(k): np.asarray(v).tolist() for k, v in x.items()}  # type: ignore[union-attr]
        if named
        else np.asarray(x).tolist()
    )
    body: dict[str, Any] = {"inputs": inputs, "method": method, **options}
    if target is not None:
        body["target"] = target
    if baseline is not None:
        body["baseline"] = (
            {str(k): np.asarray(v).tolist() for k, v in baseline.items()}
            if isinstance(baseline, Mapping)
            else np.asarray(baseline).tolist()
        )
    if version is not None:
        body["version"] = str(version)
    answer = http.object("POST", f"/api/v1/deployments/{seg(name)}/explain", json=body)
    raw = answer.get("attributions")
    if raw is None:
        raise ModelyardError(f"POST explain on '{name}': the answer has no 'attributions'")
    attributions: Any = (
        {str(k): np.asarray(v, dtype=np.float64) for k, v in raw.items()}
        if isinstance(raw, dict)
        else np.asarray(raw, dtype=np.float64)
    )
    delta = answer.get("convergence_delta")
    return Explanation(
        method=str(answer.get("method")),
        output=str(answer.get("output")),
        target=list(answer.get("target") or []),
        attributions=attributions,
        convergence_delta=None if delta is None else np.asarray(delta, dtype=np.float64),
        feature_names=answer.get("feature_names"),
        model_version=answer.get("model_version"),
        raw=answer,
    )
